"""Benchmark for cp.curate: what it finds in corrupted zoo data, how fast, and what cleaning changes downstream.

    python bench/curate.py --quick     # < 1 minute on 2 CPU cores; the headline is the last line
    python bench/curate.py             # full sizes, the MiniLM comparison and the free-text label validation

1. Detection: the zoo's triage train split (2,000 tickets) with 10% wrong labels, 5% near-duplicate copies and 3%
   leaked dev tickets (`compound.curate.noise.inject_noise`); precision and recall per kind. Near duplicates count
   as found when either copy of an injected pair is flagged.
2. Free-text labels (full run): `program=` scoring of extraction/conversion labels with the zoo's `small`, on 10%
   injected wrong labels: ROC AUC of the label-quality score and precision/recall at the default threshold.
3. Throughput: a full audit of 10,000 generated tickets (no program), beside the part SemHash's own anchor covers
   (encode + self-deduplicate) on the same texts in the same process.
4. Downstream, what an optimizer sees on 10%/5%/3% noisy triage data: its metric on noisy vs cleaned vs true
   train labels (an optimizer maximizes that number), and few-shot demos scored on the test split:
   `LabeledFewShot(k=16)` from the noisy data, the same 16 demos with their true labels (the control: only the
   wrong labels differ), and from the cleaned data, averaged over several draws of demos.
5. `--finetune` (about 4 minutes on 2 cores; adapters go to a temporary folder): LoRA fine-tunes scored on the
   extract task's test split. (a) Distillation: `small` labels unlabeled train tickets through `cp.synthesize`
   (agreement, confidence and an order-number-in-ticket check), then `tiny` and `small` itself are fine-tuned on the
   kept labels. (b) Noisy vs cleaned: `small` fine-tuned on 500 train tickets with 30% wrong order numbers (another
   ticket's, as a misaligned join makes), on the same set cleaned by `cp.curate(program=...)`, and on the true labels.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import dspy  # noqa: E402
import numpy as np  # noqa: E402

import compound as cp  # noqa: E402
from compound.curate.noise import inject_noise, precision_recall  # noqa: E402


def detection(rows, truth, report) -> dict[str, tuple[float, float]]:
    flagged = set(report.flagged("duplicate"))
    pairs = truth.duplicates
    members = set(pairs) | set(pairs.values())
    dup_p = len(flagged & members) / len(flagged) if flagged else 1.0
    dup_r = sum(1 for c, o in pairs.items() if {c, o} & flagged) / len(pairs)
    return {
        "duplicate": (dup_p, dup_r),
        "leak": precision_recall(set(report.flagged("leak")), set(truth.leaks)),
        "label": precision_recall(set(report.flagged("label")), set(truth.wrong_labels)),
    }


def print_table(title: str, results: dict[str, tuple[float, float]], seconds: float) -> None:
    print(f"\n{title} ({seconds:.1f} s)")
    print(f"  {'kind':<10} {'precision':>9} {'recall':>7}")
    for kind, (p, r) in results.items():
        print(f"  {kind:<10} {p:>9.3f} {r:>7.3f}")


def tickets(n: int, seed: int) -> list:
    from compound.zoo.suite import make_ticket

    rng = random.Random(seed)
    rows = [make_ticket(rng) for _ in range(n)]
    return [dspy.Example(ticket=r["ticket"], category=r["category"]).with_inputs("ticket") for r in rows]


def free_text(task_name: str, field: str, n: int, small) -> None:
    from sklearn.metrics import roc_auc_score

    task = cp.zoo.tasks[task_name]
    rows, truth = inject_noise(task.test[:n], label_field=field, wrong_labels=0.1, near_duplicates=0, seed=0)
    program = dspy.Predict(task.signature)
    program.lm = small
    started = time.perf_counter()
    report = cp.curate(rows, program=program)
    quality = report.checks["label"].score
    wrong = np.array([i in truth.wrong_labels for i in range(len(rows))])
    scored = ~np.isnan(quality)
    auc = roc_auc_score(wrong[scored], -quality[scored])
    p, r = precision_recall(set(report.flagged("label")), set(truth.wrong_labels))
    print(f"  {task_name:<8} {field:<9} ROC AUC {auc:.3f}  precision {p:.3f} recall {r:.3f}  "
          f"({scored.sum()}/{len(rows)} scored, {time.perf_counter() - started:.1f} s)")


def throughput(n: int) -> tuple[float, float, float]:
    from semhash import SemHash

    from compound.curate.encode import CharNgramEncoder

    rows = tickets(n, seed=7)
    texts = [r.ticket for r in rows]
    started = time.perf_counter()  # the anchor's part: encode + SemHash self-dedup
    encoder = CharNgramEncoder().fit(texts)
    SemHash.from_embeddings(encoder.encode(texts), texts, model=encoder).self_deduplicate(threshold=encoder.duplicate_threshold)
    dedup_s = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    cp.curate(rows)
    return time.perf_counter() - started, time.process_time() - cpu, dedup_s


def downstream(small, n_train: int, n_test: int, draws: int) -> dict[str, float]:
    """What an optimizer sees: its metric on noisy vs cleaned train data, and few-shot demos drawn from each."""
    triage = cp.zoo.tasks["triage"]
    rows, truth = inject_noise(triage.train[:n_train], label_field="category", wrong_labels=0.1,
                               near_duplicates=0.05, leaked=triage.dev, leaks=0.03, seed=0)
    cleaned = cp.curate(rows, against={"dev": triage.dev}, fields=["ticket", "category"]).clean()
    gold = [r.copy(category=truth.wrong_labels.get(i, r.category)) for i, r in enumerate(rows)]
    position = {id(r): i for i, r in enumerate(rows)}
    program = dspy.Predict(triage.signature)
    test = triage.test[:n_test]
    out = {}
    with dspy.context(lm=small, adapter=cp.CompactAdapter()):
        for name, data in (("noisy", rows), ("cleaned", cleaned), ("true", gold)):
            out[f"metric on {name} train"] = _score(program, data, triage.metric)
        out["zero-shot, test"] = _score(program, test, triage.metric)
        scores: dict[str, list[float]] = {"noisy": [], "noisy, true labels": [], "cleaned": []}
        wrong_demos = 0
        for draw in range(draws):
            noisy_shot = _few_shot(triage.signature, rows, draw)
            control = noisy_shot.deepcopy()  # the same demos, each with its true label
            control.demos = [gold[position[id(demo)]] for demo in noisy_shot.demos]
            wrong_demos += sum(position[id(demo)] in truth.wrong_labels for demo in noisy_shot.demos)
            for name, shot in (("noisy", noisy_shot), ("noisy, true labels", control),
                               ("cleaned", _few_shot(triage.signature, cleaned, draw))):
                scores[name].append(_score(shot, test, triage.metric))
        for name, values in scores.items():
            out[f"16 demos from {name}, test"] = float(np.mean(values))
        out["wrong labels among 16 noisy demos"] = wrong_demos / draws
    return out


def _few_shot(signature, data, draw: int):
    """LabeledFewShot(k=16) on one shuffle of `data` (it samples with a fixed seed, so the shuffle varies the draw)."""
    shuffled = list(data)
    random.Random(draw).shuffle(shuffled)
    return dspy.LabeledFewShot(k=16).compile(dspy.Predict(signature), trainset=shuffled)


def _score(program, data, metric) -> float:
    return dspy.Evaluate(devset=data, metric=metric, num_threads=8, display_progress=False)(program).score


def finetune_effects(small, tiny, n_unlabeled: int, n_noisy: int, steps: int) -> dict[str, float]:
    """Test accuracy (%) on extraction before and after LoRA fine-tunes on distilled, noisy and cleaned labels."""
    import tempfile

    extract = cp.zoo.tasks["extract"]
    with tempfile.TemporaryDirectory() as folder, dspy.context(adapter=cp.CompactAdapter()):
        os.environ["COMPOUND_ADAPTERS"] = folder  # read when an adapter is saved: the bench's stay out of ~/.cache
        try:
            out = {f"{name} before": _score(_predictor(extract, lm), extract.test, extract.metric)
                   for name, lm in (("tiny", tiny), ("small", small))}
            out.update(_distillation(extract, small, tiny, n_unlabeled, steps))
            out.update(_noisy_vs_cleaned(extract, small, n_noisy, steps))
        finally:
            del os.environ["COMPOUND_ADAPTERS"]
    return out


def _distillation(extract, small, tiny, n_unlabeled: int, steps: int) -> dict[str, float]:
    """small labels unlabeled train tickets (cp.synthesize); tiny, and small itself, learn the kept labels."""

    def in_ticket(example, prediction, trace=None):  # a check that needs no reference label
        return prediction.order_id in example.ticket

    unlabeled = [{"ticket": ex.ticket} for ex in extract.train[:n_unlabeled]]
    started = time.perf_counter()
    labeled = cp.synthesize(dspy.Predict(extract.signature), unlabeled, teacher=small, metric=in_ticket,
                            against={"dev": extract.dev, "test": extract.test})
    gold = {ex.ticket: ex.order_id for ex in extract.train}
    out = {"labels kept": len(labeled),
           "kept labels right %": 100 * sum(ex.order_id == gold[ex.ticket] for ex in labeled) / len(labeled),
           "labelling s": time.perf_counter() - started}
    out["tiny on distilled labels"] = _tuned_score(extract, tiny, labeled, "distil-tiny", steps, out)
    out["small on its own kept labels"] = _tuned_score(extract, small, labeled, "distil-small", steps, out)
    return out


def _noisy_vs_cleaned(extract, small, n_noisy: int, steps: int) -> dict[str, float]:
    """small fine-tuned on train tickets where 30% of the order numbers belong to another ticket, on the same set
    cleaned by cp.curate(program=...), and on the true labels."""
    rows, truth = inject_noise(extract.train[:n_noisy], label_field="order_id", wrong_labels=0.3,
                               near_duplicates=0, seed=0)
    report = cp.curate(rows, program=_predictor(extract, small))
    cleaned = report.clean(["label"])
    true = [r.copy(order_id=truth.wrong_labels.get(i, r.order_id)) for i, r in enumerate(rows)]
    out = {"wrong labels left after cleaning": len(set(truth.wrong_labels) - set(report.flagged("label"))),
           "examples kept by cleaning": len(cleaned)}
    for name, data in (("noisy", rows), ("cleaned", cleaned), ("true", true)):
        out[f"small on {name} labels"] = _tuned_score(extract, small, data, f"extract-{name}", steps, out)
    return out


def _predictor(task, lm):
    predictor = dspy.Predict(task.signature)
    predictor.lm = lm
    return predictor


def _tuned_score(task, lm, data, name: str, steps: int, out: dict) -> float:
    """Test accuracy of `lm` on `task` after a LoRA fine-tune on `data`; the training time goes into `out`."""
    student = _predictor(task, lm)
    started = time.perf_counter()
    cp.finetune(student, data, name=name, display=False, max_steps=steps, batch_size=16).result()
    out[f"{name} train s"] = time.perf_counter() - started
    return _score(student, task.test, task.metric)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, no MiniLM and no free-text check")
    parser.add_argument("--finetune", action="store_true", help="only the LoRA fine-tunes: distillation, noisy vs "
                        "cleaned labels (about 4 minutes)")
    args = parser.parse_args()
    dspy.disable_logging()
    if args.finetune:
        effects = finetune_effects(cp.zoo.lm("small"), cp.zoo.lm("tiny"), n_unlabeled=800, n_noisy=500, steps=200)
        for name, value in effects.items():
            print(f"  {name:<36} {value:6.1f}")
        print(f"\nheadline: extract on test, tiny {effects['tiny before']:.1f}% -> "
              f"{effects['tiny on distilled labels']:.1f}% on {effects['labels kept']:.0f} labels from small "
              f"({effects['kept labels right %']:.0f}% right); small {effects['small before']:.1f}% -> "
              f"{effects['small on its own kept labels']:.1f}% on its own kept labels; small fine-tuned on 30% wrong "
              f"labels {effects['small on noisy labels']:.1f}%, cleaned {effects['small on cleaned labels']:.1f}%, "
              f"true {effects['small on true labels']:.1f}%")
        return
    triage = cp.zoo.tasks["triage"]

    # 1) detection at 10% wrong labels, 5% near duplicates, 3% leaked dev examples
    train = triage.train[:1000] if args.quick else triage.train
    rows, truth = inject_noise(train, label_field="category", wrong_labels=0.1, near_duplicates=0.05,
                               leaked=triage.dev, leaks=0.03, seed=0)
    rows = [r.copy() for r in rows]
    for r in rows:
        del r["order_id"]  # audit the triage labels only
    started = time.perf_counter()
    report = cp.curate(rows, against={"dev": triage.dev})
    print_table(f"detection, char n-grams: {len(rows)} triage examples", detection(rows, truth, report),
                time.perf_counter() - started)
    results = detection(rows, truth, report)
    if not args.quick:
        started = time.perf_counter()
        minilm = cp.curate(rows, against={"dev": triage.dev}, encoder="minilm")
        print_table("detection, MiniLM encoder (same data)", detection(rows, truth, minilm),
                    time.perf_counter() - started)

    small = cp.zoo.lm("small")
    if not args.quick:
        print("\nfree-text labels scored by the program's model (small), 10% wrong:")
        with dspy.context(adapter=cp.CompactAdapter()):
            free_text("extract", "order_id", 200, small)
            free_text("convert", "value", 200, small)
            free_text("add", "total", 200, small)  # small cannot add: a limit of the method, shown on purpose

    # 3) throughput
    n = 10_000
    audit_s, audit_cpu_s, dedup_s = throughput(n)
    print(f"\nthroughput: full audit of {n:,} examples {audit_s:.1f} s wall, {audit_cpu_s:.1f} s CPU "
          f"({n / audit_s:,.0f}/s); "
          f"encode + SemHash dedup alone {dedup_s:.1f} s; full audit / dedup-only = {audit_s / dedup_s:.1f}x")

    # 4) downstream
    draws = 2 if args.quick else 5
    effects = downstream(small, 300 if args.quick else 2000, 40 if args.quick else 200, draws)
    print(f"\ndownstream, small on triage (accuracy %; demo rows: mean of {draws} draws):")
    for name, score in effects.items():
        print(f"  {name:<38} {score:6.1f}")
    label_effect = effects["16 demos from noisy, test"] - effects["16 demos from noisy, true labels, test"]
    print(f"  wrong demo labels change test accuracy by {label_effect:+.1f} points against the same demos correctly "
          "labelled; demo rows differ by which tickets are drawn, not by their labels")
    noisy_score, clean_score = effects["metric on noisy train"], effects["metric on cleaned train"]

    worst = min(min(results["duplicate"]), min(results["leak"]))
    print(f"\nheadline: duplicates+leaks P/R >= {worst:.2f}, wrong labels P {results['label'][0]:.2f} "
          f"R {results['label'][1]:.2f}; {n:,} examples audited in {audit_s:.1f} s; "
          f"the optimizer's metric on train reads {noisy_score:.0f}% noisy vs {clean_score:.0f}% cleaned "
          f"(true {effects['metric on true train']:.0f}%); wrong demo labels {label_effect:+.1f} points on test")


if __name__ == "__main__":
    main()
