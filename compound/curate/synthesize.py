"""`cp.synthesize`: label unlabeled inputs with a stronger teacher and keep only the labels that pass checks.

The steps, in order:
  0. drop inputs that repeat each other or leak into `against` splits (SemHash, as in `cp.curate`);
  1. the teacher answers each input greedily (the target's own signature and demos, the teacher's LM);
  2. agreement: `samples` more answers at temperature > 0 must mostly agree with the greedy one;
  3. confidence: the teacher's own probability of its answer (teacher-forced, when it is a compound LM);
  4. `metric(example, prediction)` when given: a reference-free check such as "the order number is in the ticket";
  5. with `seeds=`, a DSPy program asks the teacher for new inputs like the seeds, which go through the same steps.
Every kept example carries its provenance in `example.dspy_provenance` (DSPy hides `dspy_` keys from its fields, so
the provenance never becomes a label).

Example:
    >>> import dspy, compound as cp
    >>> dspy.configure(adapter=cp.CompactAdapter())
    >>> triage = cp.zoo.tasks["triage"]
    >>> student = dspy.Predict(triage.signature)
    >>> unlabeled = [{"ticket": ex.ticket} for ex in triage.dev[:20]]
    >>> labeled = cp.synthesize(student, unlabeled, teacher=cp.zoo.lm("small"))
    >>> len(labeled), labeled[0].dspy_provenance["teacher"]
    (20, 'local/zoo-small')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from compound.curate.data import render_inputs
from compound.curate.encode import make_encoder
from compound.curate.likelihood import LabelScorer, single_predictor
from compound.curate.similarity import Duplicates, Leaks

SAMPLE_TEMPERATURE = 0.8


class Synthesized(list):
    """The kept examples (a list), plus `rejected`: how many inputs each check dropped."""

    rejected: dict[str, int]


class ProposeInput:
    """The DSPy program that asks a generative teacher for one new input like the seeds."""

    def __init__(self, signature: Any):
        import dspy

        fields = list(signature.input_fields)
        spec = "examples -> " + ", ".join(fields)
        self.predict = dspy.Predict(dspy.Signature(
            spec, f"Write one new, different input for the task: {signature.instructions} "
                  f"It must look like the examples but not copy them."))

    def __call__(self, seeds: Sequence[dict], seed: int) -> dict[str, Any] | None:
        shown = "\n\n".join("\n".join(f"{k}: {v}" for k, v in s.items()) for s in seeds)
        try:
            pred = self.predict(examples=shown, config={"temperature": 1.0, "seed": seed, "rollout_id": seed})
        except Exception:  # an unparsable proposal is skipped, not fatal
            return None
        return {name: getattr(pred, name) for name in self.predict.signature.output_fields}


def synthesize(
    target: Any,
    inputs: Sequence[Any],
    *,
    teacher: Any,
    n: int | None = None,
    metric: Callable[..., Any] | None = None,
    against: Sequence[Any] | dict[str, Sequence[Any]] | None = None,
    samples: int = 3,
    min_agreement: float = 2 / 3,
    min_confidence: float = 0.5,
    seeds: Sequence[Any] | None = None,
    max_proposals: int = 100,
    num_threads: int = 8,
) -> Synthesized:
    """Label `inputs` for `target` (a `dspy.Predict`) with `teacher` (a stronger `dspy.LM`, or a teacher program).

    Keeps a label only when `samples` sampled answers agree with it (>= `min_agreement`), the teacher's own
    probability of it is >= `min_confidence` (compound LMs), and `metric(example, prediction)` passes (if given);
    inputs that duplicate each other or leak into `against` are dropped first. `n` caps the result (most confident
    first); with `seeds`, new inputs are proposed by the teacher until `n` pass (at most `max_proposals` tries).

    Example:
        >>> import dspy, compound as cp
        >>> dspy.configure(adapter=cp.CompactAdapter())
        >>> extract = cp.zoo.tasks["extract"]
        >>> program = dspy.Predict(extract.signature)
        >>> unlabeled = [{"ticket": ex.ticket} for ex in extract.dev[:30]]
        >>> def in_ticket(example, prediction):           # a check that needs no reference label
        ...     return prediction.order_id in example.ticket
        >>> more = cp.synthesize(program, unlabeled, teacher=cp.zoo.lm("small"), n=5, metric=in_ticket)
        >>> len(more), more.rejected["disagreement"] > 0   # samples that disagreed with the greedy answer: dropped
        (5, True)
    """
    import dspy

    student = single_predictor(target)
    signature = student.signature
    teacher_program, teacher_lm = _teacher(student, teacher)
    rows = [_inputs(row, signature, i) for i, row in enumerate(inputs)]
    if not rows and not seeds:
        raise ValueError("synthesize needs inputs to label (or seeds= to propose inputs from)")
    rejected = {"duplicate": 0, "leak": 0, "no answer": 0, "disagreement": 0, "low confidence": 0, "metric": 0}

    rows = _drop_repeats(rows, signature, against, rejected)
    kept = _label(rows, teacher_program, teacher_lm, signature, metric, samples, min_agreement, min_confidence,
                  num_threads, rejected)

    if seeds and (n is None or len(kept) < n):
        propose = ProposeInput(signature)
        seed_rows = [_inputs(row, signature, i) for i, row in enumerate(seeds)]
        seen = {render_inputs(r, list(signature.input_fields), 0) for r in rows + seed_rows}
        with dspy.context(lm=teacher_lm):
            for attempt in range(max_proposals):
                if n is not None and len(kept) >= n:
                    break
                row = propose(seed_rows, seed=attempt)
                if row is None or any(not isinstance(v, str) or not v.strip() for v in row.values()):
                    rejected["no answer"] += 1
                    continue
                text = render_inputs(row, list(signature.input_fields), 0)
                if text in seen:
                    rejected["duplicate"] += 1
                    continue
                seen.add(text)
                new = _label([row], teacher_program, teacher_lm, signature, metric, samples, min_agreement,
                             min_confidence, 1, rejected)
                for ex in new:
                    ex["dspy_provenance"]["proposed"] = True
                kept.extend(new)

    kept.sort(key=lambda ex: -ex["dspy_provenance"]["confidence"])
    out = Synthesized(kept[:n] if n is not None else kept)
    out.rejected = rejected
    return out


# ---- steps ----------------------------------------------------------------------------------------------------
def _teacher(student: Any, teacher: Any):
    import dspy

    if isinstance(teacher, dspy.BaseLM):
        program = student.deepcopy()
        program.lm = teacher
        return program, teacher
    if isinstance(teacher, dspy.Module):
        program = single_predictor(teacher)
        return program, program.lm or dspy.settings.lm
    raise TypeError(f"teacher must be a dspy.LM (e.g. cp.zoo.lm('small')) or a teacher program, got {teacher!r}")


def _inputs(row: Any, signature: Any, index: int) -> dict[str, Any]:
    fields = list(signature.input_fields)
    if isinstance(row, str) and len(fields) == 1:
        return {fields[0]: row}
    try:
        return {name: row[name] for name in fields}
    except (KeyError, TypeError):
        raise ValueError(f"input #{index} lacks the target's input fields {fields}: {row!r}") from None


def _drop_repeats(rows: list[dict], signature: Any, against: Any, rejected: dict[str, int]) -> list[dict]:
    if len(rows) < 2 and not against:
        return rows
    from compound.curate.data import read_against

    fields = list(signature.input_fields)
    texts = [render_inputs(r, fields, i, where="input") for i, r in enumerate(rows)]
    splits = read_against(against, fields)
    encoder = make_encoder(None).fit(texts + [t for ts in splits.values() for t in ts])
    vectors = encoder.encode(texts)
    threshold = encoder.duplicate_threshold
    drop = set(Duplicates(texts, vectors, floor=threshold).flagged(threshold))
    rejected["duplicate"] += len(drop)
    if splits:
        held_out = encoder.encode([t for ts in splits.values() for t in ts])
        leaks = set(Leaks(splits, held_out, vectors, floor=threshold).flagged(threshold)) - drop
        rejected["leak"] += len(leaks)
        drop |= leaks
    return [r for i, r in enumerate(rows) if i not in drop]


def _label(rows, program, lm, signature, metric, samples, min_agreement, min_confidence, num_threads, rejected):
    import dspy

    if not rows:
        return []
    outputs = list(signature.output_fields)
    examples = [dspy.Example(**r).with_inputs(*r) for r in rows]
    with dspy.context(lm=lm):
        greedy = program.batch(examples, num_threads=num_threads, max_errors=len(rows) + 1,
                               disable_progress_bar=True)
        sampled = []
        for k in range(samples):
            config = {"temperature": SAMPLE_TEMPERATURE, "seed": 1000 + k, "rollout_id": 1000 + k}
            batch = [dspy.Example(**r, config=config).with_inputs(*r, "config") for r in rows]
            sampled.append(program.batch(batch, num_threads=num_threads, max_errors=len(rows) + 1,
                                         disable_progress_bar=True))

    answered = [i for i, p in enumerate(greedy) if p is not None and all(getattr(p, f, None) is not None for f in outputs)]
    rejected["no answer"] += len(rows) - len(answered)
    confidence = np.ones(len(rows))
    try:
        scorer = LabelScorer(program) if program.lm is not None or dspy.settings.lm is not None else None
    except TypeError:  # not a compound LM: no likelihoods, the other checks still apply
        scorer = None
    if scorer is not None and answered:
        answers = [{f: getattr(greedy[i], f) for f in outputs} for i in answered]
        confidence[answered] = np.exp(scorer.logprobs([rows[i] for i in answered], answers))

    kept = []
    for i in answered:
        label = {f: getattr(greedy[i], f) for f in outputs}
        agree = sum(1 for s in sampled if s[i] is not None and all(getattr(s[i], f, None) == label[f]
                                                                   for f in outputs))
        agreement = agree / samples if samples else 1.0
        if agreement < min_agreement:
            rejected["disagreement"] += 1
            continue
        if confidence[i] < min_confidence:
            rejected["low confidence"] += 1
            continue
        example = dspy.Example(**rows[i], **label).with_inputs(*rows[i])
        if metric is not None and not _passes(metric(dspy.Example(**rows[i]).with_inputs(*rows[i]), greedy[i])):
            rejected["metric"] += 1
            continue
        example["dspy_provenance"] = {"teacher": lm.model if lm is not None else repr(program),
                                      "confidence": round(float(confidence[i]), 4),
                                      "agreement": round(agreement, 4), "proposed": False}
        kept.append(example)
    return kept


def _passes(score: Any) -> bool:
    return bool(score >= 0.5) if isinstance(score, (int, float)) else bool(score)
