"""How `cp.finetune` trains: `TrainConfig`, and the PEFT configs behind `method="lora" | "prefix" | "prompt"`.

Example:
    >>> TrainConfig(epochs=2, max_time_s=90).lr_for("lora")
    0.003
    >>> method_config("prefix").num_virtual_tokens
    16
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

# PEFT makes the adapters; these are compound's defaults for each method name (pass a peft config to choose yours).
# LoRA r=16 on every linear layer, lr 3e-3 with the cosine schedule, was the best of the settings tried on the zoo's
# convert task (700 steps: 65.5% on the test split, 60.5% at 2e-3; a constant 5e-3 or 1e-2 diverged; LoRA+, r=32 and
# smaller batches did no better); prompt-learning methods want larger learning rates.
DEFAULT_LR = {"lora": 3e-3, "prefix": 1e-2, "prompt": 3e-2}


def method_config(method: Any):
    """The PEFT config for a method name, or the PEFT config given (LoRA, prefix tuning or prompt tuning)."""
    from peft import LoraConfig, PeftConfig, PrefixTuningConfig, PromptTuningConfig

    if isinstance(method, PeftConfig):
        if not isinstance(method, (LoraConfig, PrefixTuningConfig, PromptTuningConfig)):
            raise ValueError(f"`method` {type(method).__name__} is not served by compound's engine; use a LoraConfig, "
                             "PrefixTuningConfig or PromptTuningConfig (or 'lora', 'prefix', 'prompt')")
        return dataclasses.replace(method, inference_mode=False)
    factories = {
        "lora": lambda: LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                   task_type="CAUSAL_LM"),
        "prefix": lambda: PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=16),
        "prompt": lambda: PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=16),
    }
    if method not in factories:
        raise ValueError(f"`method` must be 'lora', 'prefix', 'prompt' or a peft config (e.g. LoraConfig(r=8)), "
                         f"got {method!r}")
    return factories[method]()


def start_from(model: str, method: Any) -> tuple[Any, dict | None, str | None]:
    """(PEFT config, weights to start from, their adapter's name): a model string already on a stored adapter of the
    same method (`local/base@name`) continues from it (BetterTogether's "w -> p -> w" trains twice)."""
    from compound import adapters

    current = model.partition("@")[2]
    if current and isinstance(method, str):
        try:
            config, tensors, info = adapters.read(current)
        except (FileNotFoundError, ValueError):
            config = None
        if config is not None and info.get("method") == method:
            from peft import PeftConfig

            return PeftConfig.from_peft_type(**{**config, "inference_mode": False}), tensors, current
    return method_config(method), None, None


def method_name(peft_config) -> str:
    return {"LORA": "lora", "PREFIX_TUNING": "prefix", "PROMPT_TUNING": "prompt"}[peft_config.peft_type.value]


@dataclass
class TrainConfig:
    """The training loop's settings. Training ends at whichever limit comes first: `epochs`, `max_steps`,
    `max_time_s`, early stopping (`patience` dev evaluations without a gain) or `job.stop()`.

    Example:
        >>> TrainConfig(batch_size=16, eval_every=50).batch_size
        16
    """

    epochs: float = 3.0  # passes over the training examples (fractions allowed)
    max_steps: int | None = None  # optimizer steps, overriding `epochs`
    max_time_s: float | None = None  # wall-clock budget for the training loop (data preparation not counted)
    batch_size: int = 32
    lr: float | None = None  # None: 3e-3 for LoRA, 1e-2 for prefix tuning, 3e-2 for prompt tuning
    schedule: str = "cosine"  # "cosine" (linear warm-up, then down to 10% at the last planned step) or "constant"
    warmup_steps: int = 10
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int | None = None  # steps between dev evaluations (None: once per epoch); needs `valset`
    patience: int | None = 5  # dev evaluations without improvement before stopping early (None: never)
    min_delta: float = 0.0  # the smallest dev-score gain that counts as an improvement
    eval_threads: int = 32  # DSPy threads of each dev evaluation: more threads, bigger engine batches
    checkpoint_every: int | None = None  # steps between resumable checkpoints (None: at every dev evaluation/epoch)
    shared_prefix: bool = True  # LoRA: compute the prompt prefix every row shares once per batch (same gradients)
    gradient_checkpointing: bool | None = None  # None: on for CUDA
    bf16: bool | None = None  # None: autocast to bfloat16 on CUDA devices that support it
    threads: int | None = None  # torch threads of the training thread on CPU (None: 1 on machines of <= 4 cores)
    seed: int = 0
    extra: dict = field(default_factory=dict, repr=False)  # recorded in the manifest as is

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"`batch_size` must be at least 1, got {self.batch_size}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"`schedule` must be 'cosine' or 'constant', got {self.schedule!r}")
        for name in ("epochs", "max_steps", "max_time_s", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"`{name}` must be positive (or None), got {value!r}")

    def lr_for(self, method: str) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[method]

    def cpu_threads(self) -> int:
        # Like the engine (compound.lm.config): on small shared machines OpenMP teams of 2+ threads stall each other
        # (measured on 2 busy cores: a training step 10x slower with 2 threads than with 1).
        cores = os.cpu_count() or 1
        return self.threads or (1 if cores <= 4 else min(8, cores // 2))

    @classmethod
    def split(cls, kwargs: dict) -> tuple[TrainConfig, dict]:
        """A config from the keys it knows; the rest (e.g. `r`, `lora_alpha` from DSPy's `train_kwargs`) returned."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in kwargs.items() if k in names}), {k: v for k, v in kwargs.items() if k not in names}

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)
