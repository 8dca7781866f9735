"""Training for DSPy's `Provider` protocol (`compound.lm.provider.EngineProvider.finetune` calls this)."""

from __future__ import annotations

import uuid
from typing import Any

from dspy.clients.utils_finetune import TrainDataFormat

from compound.tune.config import TrainConfig, method_config, start_from
from compound.tune.job import FinetuneJob
from compound.tune.target import Target

LORA_KEYS = ("r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora")


def train_for_dspy(loaded, dspy_job, model: str, train_data: list[dict[str, Any]], train_data_format,
                   train_kwargs: dict[str, Any]) -> str:
    """Train an adapter on DSPy's chat data and return its model string `local/<base>@ft-<id>` (a new one per run)."""
    if train_data_format not in (TrainDataFormat.CHAT, "chat"):
        raise ValueError(f"compound trains on chat data (TrainDataFormat.CHAT); got {train_data_format!r}. Use "
                         "ChatAdapter or cp.CompactAdapter with BootstrapFinetune")
    if not train_data:
        raise ValueError("DSPy passed no training data: no bootstrapped trace passed the metric")
    kwargs = dict(train_kwargs)
    method = kwargs.pop("method", "lora")
    lora = {k: kwargs.pop(k) for k in LORA_KEYS if k in kwargs}
    config, unknown = TrainConfig.split(kwargs)
    if unknown:
        raise TypeError(f"unknown train_kwargs {sorted(unknown)}; use TrainConfig fields or LoRA settings {LORA_KEYS}")
    peft_config, init_tensors, init_from = start_from(model, method)
    if any(getattr(peft_config, k) != v for k, v in lora.items()):  # other LoRA settings: a fresh adapter
        peft_config, init_tensors, init_from = method_config(method), None, None
    if lora:
        if method != "lora":
            raise ValueError(f"LoRA settings {sorted(lora)} given for method {method!r}")
        for key, value in lora.items():
            setattr(peft_config, key, value)
    name = f"ft-{uuid.uuid4().hex[:8]}"
    job = FinetuneJob(Target(loaded, None, label="ft"), peft_config, config, name=name,
                      chats=[d["messages"] for d in train_data], init=(init_from, init_tensors))
    dspy_job.finetune_job = job
    job.start()
    return job.result()
