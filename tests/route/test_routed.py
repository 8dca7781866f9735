"""cp.Routed sends each call to the model its router picks, through optimizers, copies, save/load and 16 threads."""

from __future__ import annotations

import copy
import json

import dspy
import numpy as np
import pytest

import compound as cp
from compound.route.collector import query_text
from compound.zoo.helpdesk import HelpDesk, metric, requests


class Desk(dspy.Module):
    """A program with a routed module inside, as a user would write it."""

    def __init__(self, router, candidates, threshold=0.5, **routing):
        super().__init__()
        self.desk = cp.Routed(HelpDesk(), router, candidates, threshold=threshold, **routing)

    def forward(self, kind, text):
        return self.desk(kind=kind, text=text)


def _expected(router, examples, threshold=0.5):
    queries = [query_text(HelpDesk(), ex.inputs().toDict()) for ex in examples]
    return router.route_names(queries, threshold)


def test_each_call_goes_to_the_chosen_model_and_shows_in_history(kind_router, tiny, small):
    examples = requests("dev", per_kind=2)
    routed = cp.Routed(HelpDesk(), kind_router, [tiny, small], threshold=0.5)
    for ex in examples:
        routed(**ex.inputs())
    models = [entry["model"].removeprefix("local/") for entry in routed.history]
    assert models == _expected(kind_router, examples)
    # the router learned the kinds: categories and sums to tiny, order numbers and conversions to small
    assert models == ["zoo-tiny", "zoo-small", "zoo-small", "zoo-tiny"] * 2
    assert routed.calls == {"zoo-tiny": 4, "zoo-small": 4}
    # the extremes of the threshold: never pay for small, or always take the best predicted model
    routed.threshold = 5.0
    routed(**examples[1].inputs())
    assert routed.history[-1]["model"] == "local/zoo-tiny"


def test_dspy_evaluate_with_16_threads(kind_router, tiny, small):
    examples = requests("dev", per_kind=10)
    program = Desk(kind_router, [tiny, small])
    result = dspy.Evaluate(devset=examples, metric=metric, num_threads=16, display_progress=False)(program)
    expected = _expected(kind_router, examples)
    assert program.desk.calls == {m: expected.count(m) for m in ("zoo-tiny", "zoo-small")}
    # every answer is the chosen model's own answer
    lms = {"zoo-tiny": tiny, "zoo-small": small}
    for (ex, prediction, score), model in zip(result.results, expected):
        with dspy.context(lm=lms[model]):
            assert HelpDesk()(**ex.inputs()).answer == prediction.answer


def test_routing_survives_bootstrap_fewshot_and_cp_optimize(kind_router, tiny, small):
    trainset, probe = requests("train", per_kind=2), requests("dev", per_kind=1)
    program = Desk(kind_router, [tiny, small])
    compiled = dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=1, max_labeled_demos=0).compile(
        program, trainset=trainset)
    assert isinstance(compiled.desk, cp.Routed) and compiled.desk is not program.desk
    assert all(p.lm is None for _, p in compiled.named_predictors())  # the optimizer reset them: no matter
    assert sum(len(p.demos) for _, p in compiled.named_predictors()) > 0
    for ex in probe:
        compiled(**ex.inputs())
    assert [e["model"].removeprefix("local/") for e in compiled.desk.history] == _expected(kind_router, probe)

    job = cp.optimize(Desk(kind_router, [tiny, small]), trainset, "BootstrapFewShot", metric=metric, display=False,
                      max_bootstrapped_demos=1, max_labeled_demos=0)
    optimized = job.result()
    for ex in probe:
        optimized(**ex.inputs())
    assert [e["model"].removeprefix("local/") for e in optimized.desk.history] == _expected(kind_router, probe)


def test_deepcopy_shares_the_encoder_and_starts_its_own_record(kind_router, tiny, small):
    program = Desk(kind_router, [tiny, small])
    program(**requests("dev", 1)[0].inputs())
    twin = program.deepcopy()
    assert twin.desk.router is not program.desk.router and twin.desk.calls == {"zoo-tiny": 0, "zoo-small": 0}
    from compound.route.embed import encoder

    assert copy.deepcopy(encoder()) is encoder()  # one MiniLM per process, whatever is copied
    assert twin.desk.threshold == program.desk.threshold and twin.desk.models == program.desk.models


def test_save_and_load_restore_router_and_threshold_without_pickle(kind_router, tiny, small, tmp_path):
    program = Desk(kind_router, [tiny, small], threshold=0.25)
    program.save(tmp_path / "desk.json")
    state = json.loads((tmp_path / "desk.json").read_text())
    assert state["desk.route"]["router"]["class"] == "LogisticRouter" and state["desk.route"]["threshold"] == 0.25
    fresh = Desk(cp.route.RandomRouter().fit(np.eye(2), np.eye(2), models=["zoo-tiny", "zoo-small"]), [tiny, small])
    fresh.load(tmp_path / "desk.json")
    assert type(fresh.desk.router) is cp.route.LogisticRouter and fresh.desk.threshold == 0.25
    examples = requests("dev", per_kind=1)
    for ex in examples:
        fresh(**ex.inputs())
    assert [e["model"].removeprefix("local/") for e in fresh.desk.history] == _expected(kind_router, examples, 0.25)

    state["desk.route"]["router"]["class"] = "subprocess.Popen"
    (tmp_path / "evil.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="refusing to build router class"):
        fresh.load(tmp_path / "evil.json")
    assert type(fresh.desk.router) is cp.route.LogisticRouter  # a refused load changes nothing
    other = Desk(cp.route.KNNRouter(k=1).fit(np.eye(2), np.eye(2), models=["zoo-small", "zoo-tiny"]),
                 {"zoo-small": small, "zoo-tiny": tiny})
    with pytest.raises(ValueError, match="same candidates"):
        other.load(tmp_path / "desk.json")


def test_cp_show_names_the_routing(kind_router, tiny, small):
    program = Desk(kind_router, [tiny, small])
    for ex in requests("dev", per_kind=1):
        program(**ex.inputs())
    text = str(cp.show(program))
    assert "routed: zoo-tiny 50.0% | zoo-small 50.0% (LogisticRouter, threshold 0.500)" in text
    assert all(m["lm_source"] == "routed" for m in cp.show(program).modules)


def test_a_cascade_defers_to_small_when_the_verifier_rejects_tiny(tiny, small):
    plausible = _plausible
    cascade = cp.route.CascadeRouter(confidence="verifier").fit(np.ones((2, 2)), np.ones((2, 2)), costs=[1, 2],
                                                                models=["zoo-tiny", "zoo-small"])
    routed = cp.Routed(HelpDesk(), cascade, [tiny, small], threshold=0.5, verifier=plausible)
    examples = [ex for ex in requests("dev", per_kind=6) if ex.kind in ("category", "order number")]
    for ex in examples:
        before = len(routed.history)
        prediction = routed(**ex.inputs())
        calls = [e["model"].removeprefix("local/") for e in routed.history[before:]]
        with dspy.context(lm=tiny):
            tiny_answer = HelpDesk()(**ex.inputs())
        if plausible(ex.inputs().toDict(), tiny_answer) >= 0.5:
            assert calls == ["zoo-tiny"] and prediction.answer == tiny_answer.answer
        else:  # tiny was asked first, then small answered
            assert calls == ["zoo-tiny", "zoo-small"]
    assert routed.calls["zoo-small"] > 0 and routed.calls["zoo-tiny"] > 0
    with pytest.raises(ValueError, match="verifier="):
        cp.Routed(HelpDesk(), cascade, [tiny, small])


def test_a_cascade_on_sample_agreement(tiny, small):
    cascade = cp.route.CascadeRouter(confidence="agreement", samples=2).fit(
        np.ones((2, 2)), np.ones((2, 2)), costs=[1, 2], models=["zoo-tiny", "zoo-small"])
    always_defer = cp.Routed(HelpDesk(), cascade, [tiny, small], threshold=1.01)   # no answer is that sure
    example = requests("dev", per_kind=1)[1]
    always_defer(**example.inputs())
    # tiny's answer, its two samples, then small (which always answers last)
    assert [e["model"] for e in always_defer.history] == ["local/zoo-tiny"] * 3 + ["local/zoo-small"]
    never_defer = cp.Routed(HelpDesk(), cascade, [tiny, small], threshold=0.0)
    never_defer(**example.inputs())
    assert never_defer.calls == {"zoo-tiny": 1, "zoo-small": 0}


def test_wrong_arguments_are_refused_clearly(kind_router, tiny, small):
    with pytest.raises(ValueError, match="fitted on models"):
        cp.Routed(HelpDesk(), kind_router, {"a": tiny, "b": small})
    with pytest.raises(ValueError, match="not fitted"):
        cp.Routed(HelpDesk(), cp.route.KNNRouter(), [tiny, small])
    with pytest.raises(TypeError, match="compound router"):
        cp.Routed(HelpDesk(), "knn", [tiny, small])
    routed = cp.Routed(HelpDesk(), kind_router, [tiny, small])
    with pytest.raises(TypeError, match="already Routed"):
        cp.Routed(routed, kind_router, [tiny, small])


def test_the_demo_cost_table_shows_each_models_share_of_a_routed_module(kind_router, tiny, small):
    from compound.trace import ModuleCosts

    program = Desk(kind_router, [tiny, small])
    costs = ModuleCosts(program)
    with dspy.context(callbacks=[costs]):
        for ex in requests("dev", per_kind=2):
            program(**ex.inputs())
    served = {}
    for cost in costs.costs.values():
        for model, n in cost.models.items():
            served[model] = served.get(model, 0) + n
    assert served == {"local/zoo-tiny": 4, "local/zoo-small": 4}
    assert costs["desk.module.skills['category']"].model_label == "local/zoo-tiny"  # one model: as before
    mixed = costs["desk.module.skills['category']"]
    mixed.models["local/zoo-small"] += 2   # as if the router had sent two category requests to small
    assert mixed.model_label == "zoo-tiny 50% | zoo-small 50%"


FAMILIES = {  # every learned family (and the random baseline), on hashed n-grams: they all route the same way
    "knn": lambda: cp.route.KNNRouter(k=3, encoder="hashing"),
    "logistic": lambda: cp.route.LogisticRouter(C=10.0, encoder="hashing"),
    "mlp": lambda: cp.route.MLPRouter(encoder="hashing"),
    "mf": lambda: cp.route.MFRouter(encoder="hashing"),
    "random": lambda: cp.route.RandomRouter(),
}
CASCADES = {"cascade-logprob": {"confidence": "logprob"}, "cascade-agreement": {"confidence": "agreement", "samples": 2},
            "cascade-verifier": {"confidence": "verifier"}}


def _cascade(confidence, **params):
    return cp.route.CascadeRouter(confidence=confidence, **params).fit(
        np.ones((2, 2)), np.ones((2, 2)), costs=[1, 2], models=["zoo-tiny", "zoo-small"])


class AsyncOnlyDesk(HelpDesk):
    """A help desk whose sync path fails: under asyncio a routed call must take DSPy's `aforward` path."""

    def forward(self, kind, text):
        raise AssertionError("the sync forward ran under asyncio")


def _plausible(inputs, prediction):  # a known category, or five digits that appear in the ticket
    answer = str(prediction.answer)
    if inputs["kind"] == "category":
        return float(answer in ("billing", "technical", "account", "shipping"))
    return float(answer.isdigit() and len(answer) == 5 and answer in inputs["text"])


@pytest.mark.parametrize("family", [*FAMILIES, *CASCADES])
def test_async_calls_route_as_sync_calls_do_for_every_router_family(family, kind_training, tiny, small):
    import asyncio

    if family in FAMILIES:
        router = FAMILIES[family]().fit(*kind_training, costs=[1.0, 2.0], models=["zoo-tiny", "zoo-small"])
    else:
        router = _cascade(**CASCADES[family])
    examples = requests("dev", per_kind=2)
    threshold = 0.9 if family == "cascade-logprob" else 0.5
    make = lambda desk: cp.Routed(desk, router, [tiny, small], threshold=threshold, verifier=_plausible)  # noqa: E731
    sync = make(HelpDesk())
    expected = [sync(**ex.inputs()).answer for ex in examples]
    asynchronous = make(AsyncOnlyDesk())

    async def run_all():
        return await asyncio.gather(*(asynchronous.acall(**ex.inputs()) for ex in examples))

    predictions = asyncio.run(run_all())
    assert [p.answer for p in predictions] == expected        # the same answers, from the same models
    assert asynchronous.calls == sync.calls and sum(sync.calls.values()) == len(examples)
    assert sorted(e["model"] for e in asynchronous.history) == sorted(e["model"] for e in sync.history)


def test_a_logprob_cascade_defers_exactly_when_tiny_is_unsure_and_asks_it_once(tiny, small):
    from test_collect import _exp_mean_logprob

    examples = requests("dev", per_kind=3)
    confidence = [_exp_mean_logprob(tiny, HelpDesk(), ex) for ex in examples]
    threshold = float(np.median(confidence))
    routed = cp.Routed(HelpDesk(), _cascade("logprob"), [tiny, small], threshold=threshold)
    for ex, sure in zip(examples, confidence):
        before = len(routed.history)
        prediction = routed(**ex.inputs())
        calls = [e["model"].removeprefix("local/") for e in routed.history[before:]]
        # one pass of tiny with log-probabilities, no extra samples; small only below the threshold
        assert calls == (["zoo-tiny"] if sure >= threshold else ["zoo-tiny", "zoo-small"])
        assert routed.history[before]["outputs"][0]["logprobs"]["content"]   # DSPy's standard logprobs output
        with dspy.context(lm=tiny if sure >= threshold else small):
            assert prediction.answer == HelpDesk()(**ex.inputs()).answer
    assert 0 < routed.calls["zoo-small"] < len(examples)


def test_cp_costs_and_cp_show_count_a_verifiers_own_calls_apart_from_the_routed_ones(tiny, small):
    from test_collect import AgreesWithSmall

    program = Desk(_cascade("verifier"), [tiny, small], verifier=AgreesWithSmall(small))
    examples = [ex for ex in requests("dev", per_kind=4) if ex.kind == "order number"]
    report = cp.costs(program, examples, metric=metric, num_threads=4)
    check = report["desk.verifier.check"]
    assert check.calls == len(examples) and check.model == "local/zoo-small"    # it checked every tiny answer
    extract = report["desk.module.skills['order number']"]
    assert extract.calls == len(examples) + program.desk.calls["zoo-small"]    # tiny on all, small on the deferred
    table = repr(report).splitlines()
    model_column = table[1].index("model")       # the text table: long routed names keep to their own column
    for line in table[2:]:
        assert line[:model_column].rstrip() in report.modules and line[model_column - 1] == " "
    shown = {m["name"]: m for m in cp.show(program).modules}
    assert shown["desk.verifier.check"]["lm_source"] == "predictor"           # its own LM, not routed
    assert shown["desk.module.skills['order number']"]["lm_source"] == "routed"


def test_a_routing_report_as_a_cells_value_shows_the_live_widget_in_a_kernel():
    """In a real ipykernel the report's display carries the widget view beside its text and HTML."""
    import queue

    import jupyter_client

    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        code = (
            "import numpy as np, pandas as pd, compound as cp\n"
            "frame = pd.DataFrame({'example': np.repeat(range(4), 2), 'model': ['cheap', 'dear'] * 4,\n"
            "                      'query': np.repeat(list('abcd'), 2), 'score': [1, 1, 0, 1, 1, 1, 0, 1]})\n"
            "data = cp.route.RoutingData(frame, ['cheap', 'dear'], cost={'cheap': 1.0, 'dear': 4.0})\n"
            "cp.route.evaluate(cp.route.OracleRouter().fit(data), data)\n"
        )
        msg_id = kc.execute(code)
        result = None
        while True:
            try:
                msg = kc.get_iopub_msg(timeout=60)
            except queue.Empty:
                raise AssertionError("the kernel did not answer") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "execute_result":
                result = msg["content"]["data"]
            if msg["msg_type"] == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        assert result is not None
        assert "application/vnd.jupyter.widget-view+json" in result     # the live view, from the registry
        assert result["text/plain"].startswith("RoutingReport: 4 examples") and "<svg" in result["text/html"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
