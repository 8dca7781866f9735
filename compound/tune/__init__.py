"""compound.tune — fine-tune the LM of a DSPy module as a PEFT adapter in one cell, served at once by the engine.

    job = cp.finetune(program.convert, trainset, metric=task.metric, valset=dev)   # returns at once
    job.stop()                 # or the view's Stop: ends at the next step, keeps the best adapter so far
    lm = job.result()          # local/zoo-small@value-3f9a2c; program.convert now calls it

Example:
    >>> from compound.tune import TrainConfig
    >>> TrainConfig(max_time_s=90).batch_size
    32
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from compound.tune.config import TrainConfig, start_from
from compound.tune.job import FinetuneJob

__all__ = ["FinetuneJob", "TrainConfig", "finetune"]

_DISPLAY_MODES = ("auto", "text", "none")


def finetune(
    target: Any,
    data: Sequence,
    *,
    metric: Callable[..., Any] | None = None,
    valset: Sequence | None = None,
    method: Any = "lora",
    name: str | None = None,
    teacher: Any = None,
    bootstrap: bool | None = None,
    resume: bool = False,
    config: TrainConfig | None = None,
    display: str | bool = "auto",
    **train_kwargs: Any,
) -> FinetuneJob:
    """Start fine-tuning `target`'s LM as an adapter on a background thread; returns the `FinetuneJob` at once.

    `target` is a DSPy predictor (`program.step`), a module (its predictors must share one LM) or a `cp.LM`. `data`
    is a list of `dspy.Example`: examples holding the predictor's output fields are formatted directly, otherwise (or
    with `bootstrap=True`) traces are bootstrapped through the program, or `teacher`, and kept when `metric` passes.
    For a `cp.LM` target, `data` is chat data: `{"messages": [..., {"role": "assistant", ...}]}` dicts. Formatting
    uses the configured DSPy adapter (`dspy.configure(adapter=...)`), so the model learns the prompt it is served.

    `method` is "lora", "prefix", "prompt" or a PEFT config. With `valset` (and `metric`) the adapter is scored through
    the engine every epoch: the best one wins, and training stops early after `patience` evaluations without a gain.
    `train_kwargs` are `TrainConfig` fields (`epochs`, `max_time_s`, `lr`, `batch_size`, `eval_every`, ...).
    `result()` saves the adapter to `cp.adapters` under `name`, and returns its `dspy.LM`, which the target's
    predictors now use. `resume=True` continues a stopped run of the same `name` from its last checkpoint.

    Example:
        >>> import compound as cp
        >>> from compound.testing import reverse_chats, tiny_served_lm
        >>> job = cp.finetune(tiny_served_lm("doc-finetune"), reverse_chats(), name="reverse-v1", max_steps=4)
        >>> job.result().model     # the adapter's dspy.LM; a predictor target would now call it
        'local/doc-finetune@reverse-v1'
    """
    import dspy
    from dspy.dsp.utils.settings import thread_local_overrides

    from compound import adapters
    from compound.tune.target import resolve

    if config is not None and train_kwargs:
        raise TypeError("pass training settings either as `config=TrainConfig(...)` or as keywords, not both")
    if config is None:
        config, unknown = TrainConfig.split(train_kwargs)
        if unknown:
            raise TypeError(f"cp.finetune got unknown keywords {sorted(unknown)}; TrainConfig fields are "
                            f"{sorted(TrainConfig.__dataclass_fields__)}")
    settings = dict(thread_local_overrides.get())  # `with dspy.context(...)` around the call reaches the job
    tgt = resolve(target, settings.get("lm", dspy.settings.lm))
    chat_data = tgt.program is None
    _check_data("data", data, chat_data)
    if valset is not None:
        _check_data("valset", valset, chat_data)
        if not chat_data and metric is None:
            raise ValueError("`valset` needs a `metric` to score the adapter, e.g. metric=task.metric")
    if resume and name is None:
        raise ValueError("`resume=True` needs the `name` of the run to continue")
    name = adapters.check_name(name or f"{tgt.label}-{uuid.uuid4().hex[:6]}")
    peft_config, init_tensors, init_from = start_from(tgt.lm.model, method)
    dspy_adapter = settings.get("adapter", dspy.settings.adapter) or dspy.ChatAdapter()
    job = FinetuneJob(
        tgt, peft_config, config, name=name,
        examples=None if chat_data else list(data), chats=[c["messages"] for c in data] if chat_data else None,
        metric=metric, valset=list(valset) if valset is not None else None, teacher=teacher, bootstrap=bootstrap,
        dspy_adapter=dspy_adapter, init=(init_from, init_tensors), resume=resume, settings=settings,
    )
    mode = {True: "auto", False: "none", None: "none"}.get(display, display)
    if mode not in _DISPLAY_MODES:
        raise ValueError(f"`display` must be one of {_DISPLAY_MODES} or a bool, got {display!r}")
    job.start()
    _show(job, mode)
    return job


def _check_data(label: str, data: Sequence, chat: bool) -> None:
    import dspy

    if isinstance(data, (str, bytes)) or not isinstance(data, Sequence) or not data:
        raise TypeError(f"`{label}` must be a non-empty list, got {type(data).__name__}")
    if chat:
        bad = next((d for d in data if not (isinstance(d, dict) and isinstance(d.get("messages"), list))), None)
        if bad is not None:
            raise TypeError(f"to fine-tune an LM, `{label}` holds chat data: {{'messages': [{{'role': 'user', ...}}, "
                            f"{{'role': 'assistant', ...}}]}} dicts; found {type(bad).__name__}")
    else:
        bad = next((e for e in data if not isinstance(e, dspy.Example)), None)
        if bad is not None:
            raise TypeError(f"`{label}` must hold dspy.Example objects with inputs marked, e.g. "
                            f"dspy.Example(question=..., answer=...).with_inputs('question'); found {type(bad).__name__}")


def _show(job: FinetuneJob, mode: str) -> None:
    if mode == "none" or (mode == "auto" and job.display()):
        return  # in a notebook: the live view (or its text) is under the cell, and its record when it ends
    from compound.optimize.run import TextReporter

    TextReporter(job, interval=10.0)
