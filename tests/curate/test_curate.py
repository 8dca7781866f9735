"""cp.curate against known corruptions of the zoo's triage data, and its contract: clean() copies, thresholds move
without recomputing, bad input gets an error that says what to do."""

import copy

import dspy
import numpy as np
import pytest

import compound as cp
from compound.curate.noise import inject_noise, precision_recall

TRIAGE = cp.zoo.tasks["triage"]


@pytest.fixture(scope="module")
def noisy():
    rows, truth = inject_noise(TRIAGE.train[:600], wrong_labels=0.1, near_duplicates=0.05, leaked=TRIAGE.dev,
                               leaks=0.03, seed=1)
    return rows, truth


@pytest.fixture(scope="module")
def report(noisy):
    return cp.curate(noisy[0], against={"dev": TRIAGE.dev})


def test_finds_the_injected_duplicates_leaks_and_wrong_labels(noisy, report):
    _, truth = noisy
    flagged = set(report.flagged("duplicate"))
    members = set(truth.duplicates) | set(truth.duplicates.values())
    found = sum(1 for copy_at, original_at in truth.duplicates.items() if {copy_at, original_at} & flagged)
    assert len(flagged & members) / len(flagged) >= 0.9 and found / len(truth.duplicates) >= 0.9
    assert min(precision_recall(set(report.flagged("leak")), set(truth.leaks))) >= 0.9
    assert min(precision_recall(set(report.flagged("label")), set(truth.wrong_labels))) >= 0.8
    # each reason points back at what it found
    some_copy = next(iter(flagged))
    assert report.flagged("duplicate")[some_copy].startswith(("near copy of #", "exact copy of #"))
    some_leak = next(iter(report.flagged("leak")))
    assert "dev #" in report.flagged("leak")[some_leak]


def test_clean_returns_copies_and_leaves_the_input_alone(noisy, report):
    rows = noisy[0]
    before = [dict(ex.items()) for ex in rows]
    kept = report.clean()
    dropped = set(report.flagged("duplicate")) | set(report.flagged("leak")) | set(report.flagged("label"))
    assert len(kept) == len(rows) - len(dropped)
    kept[0]["ticket"] = "changed"
    assert [dict(ex.items()) for ex in rows] == before
    assert all(a is not b for a, b in zip(kept, rows))
    # keep/drop override the flags, issues choose the kinds
    one = next(iter(report.flagged("leak")))
    assert len(report.clean(["leak"], keep=[one])) == len(rows) - len(report.flagged("leak")) + 1
    assert len(report.clean([], drop=[0, 1])) == len(rows) - 2
    with pytest.raises(ValueError, match="positions 0.."):
        report.clean(keep=[len(rows)])


def test_leaks_are_found_across_several_splits():
    train = TRIAGE.train[:150]
    leaked = [TRIAGE.dev[3].copy(), TRIAGE.test[7].copy()]
    leaked[1]["ticket"] = leaked[1]["ticket"].lower()
    report = cp.curate(train + leaked, against={"dev": TRIAGE.dev, "test": TRIAGE.test})
    assert report.flagged("leak") == {150: "is dev #3", 151: report.flagged("leak")[151]}
    assert report.flagged("leak")[151].startswith("nearly test #7")
    assert report.summary()["against"] == {"dev": 100, "test": 200}


def test_rethreshold_rereads_scores_and_clean_can_use_other_thresholds(report):
    strict = len(report.clean(["duplicate"], thresholds={"duplicate": 0.999}))
    default = len(report.clean(["duplicate"]))
    assert strict >= default  # fewer copies at a stricter threshold
    seen = []
    at_default = len(report.flagged("duplicate"))
    unwatch = report.watch(lambda r: seen.append(r.thresholds["duplicate"]))
    try:
        report.rethreshold(duplicate=0.8)
        assert seen == [0.8] and len(report.flagged("duplicate")) >= at_default
        assert report.clean_code(keep=[3]) == "report.clean(thresholds={'duplicate': 0.8}, keep=[3])"
        with pytest.raises(ValueError, match="below 0.8"):
            report.rethreshold(duplicate=0.5)
        assert report.thresholds["duplicate"] == 0.8  # a refused change changes nothing
    finally:
        report.rethreshold(duplicate=0.9)
        unwatch()
    assert report.clean_code(["leak", "duplicate"]) == "report.clean(['leak', 'duplicate'])"


def test_to_pandas_repr_and_html(report):
    frame = report.to_pandas()
    assert len(frame) == len(report.examples)
    for kind in report.kinds:
        assert f"is_{kind}" in frame and f"{kind}_score" in frame
    assert frame["is_label"].sum() == len(report.flagged("label"))
    text = repr(report)
    assert text.startswith("CurationReport: ") and "duplicate" in text and "similarity >= 0.9" in text
    page = report._repr_html_()
    assert "<table" in page and "leak" in page and "&lt;" not in text


def test_free_text_labels_are_left_unchecked_without_a_program():
    report = cp.curate(TRIAGE.train[:60], fields=["ticket", "order_id"])
    assert "label" not in report.kinds
    assert "pass program=" in report.info["labels"]["order_id"]


@pytest.mark.parametrize("rows, error, match", [
    ([], ValueError, "at least 2 examples"),
    ([dspy.Example(ticket="a", category="x").with_inputs("ticket"), dspy.Example(ticket="b").with_inputs("ticket")],
     ValueError, "#1 has no label field 'category'"),
    ([dspy.Example(ticket="a", category="x").with_inputs("ticket"),
      dspy.Example(ticket=["b"], category="y").with_inputs("ticket")], TypeError, "#1 field 'ticket' is list"),
    ([dspy.Example(ticket=f"t{i}", category="x").with_inputs("ticket") for i in range(5)],
     ValueError, "one value only"),
    ([dspy.Example(ticket="a", category="x"), dspy.Example(ticket="b", category="y")], ValueError, "with_inputs"),
    ("not a list", TypeError, "list of dspy.Example"),
])
def test_bad_input_gets_a_clear_error(rows, error, match):
    with pytest.raises(error, match=match):
        cp.curate(rows)


def test_bad_thresholds_and_kinds_are_refused(report):
    with pytest.raises(ValueError, match="unknown kinds"):
        cp.curate(TRIAGE.train[:20], thresholds={"dupe": 0.9})
    with pytest.raises(ValueError, match="unknown issue kind 'dupe'"):
        report.clean(["dupe"])
    with pytest.raises(ValueError, match="must be a number"):
        report.rethreshold(leak=None)


def test_similarity_search_is_exact_and_the_same_every_run():
    """Below EXACT_SEARCH_UP_TO records every leak score is the true best cosine (no ANN misses), run after run."""
    from compound.curate.similarity import Duplicates, Leaks

    rng = np.random.default_rng(0)
    against = rng.normal(size=(600, 32)).astype(np.float32)
    # queries near some `against` rows, at similarities spread around the 0.8 floor, plus unrelated ones
    near = against[:200] + rng.normal(scale=np.linspace(0.1, 1.0, 200)[:, None], size=(200, 32)).astype(np.float32)
    queries = np.vstack([near, rng.normal(size=(100, 32)).astype(np.float32)])

    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    best = (unit(queries) @ unit(against).T).max(axis=1)
    runs = [Leaks({"dev": [f"t{i}" for i in range(600)]}, against, queries, floor=0.8) for _ in range(2)]
    expected = np.where(best >= 0.8, np.round(best, 4), np.nan)
    np.testing.assert_allclose(runs[0].score, expected, atol=2e-4)
    np.testing.assert_array_equal(runs[0].score, runs[1].score)
    assert 20 < np.count_nonzero(~np.isnan(expected)) < 200  # the test straddles the floor

    texts = [f"t{i}" for i in range(len(queries))]
    assert Duplicates(texts, queries, floor=0.8).flagged(0.8) == Duplicates(texts, queries, floor=0.8).flagged(0.8)
