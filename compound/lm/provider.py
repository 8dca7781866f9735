"""The DSPy `Provider` on every `cp.LM`: `dspy.BootstrapFinetune` and `dspy.BetterTogether` fine-tune in-process.

DSPy hands the LM's provider chat data and expects a model string back. compound trains a LoRA adapter on the loaded
model (in `compound.tune`, imported only when DSPy trains: the trainer sits above the engine), saves it to
`cp.adapters` under a fresh name and serves it from the same engine as `local/<base>@ft-<id>`, so every run gets its
own model string and DSPy's cache never mixes two runs. `train_kwargs` are `cp.TrainConfig` fields plus LoRA
settings (`r`, `lora_alpha`, `target_modules`, `lora_dropout`) or `method`.

Example (what `dspy.BootstrapFinetune(metric=..., train_kwargs={"epochs": 2}).compile(program, ...)` calls):
    >>> from dspy.clients.utils_finetune import TrainDataFormat
    >>> from compound.testing import reverse_chats, tiny_served_lm
    >>> lm = tiny_served_lm("doc-provider")
    >>> lm.finetune(reverse_chats(), TrainDataFormat.CHAT, {"max_steps": 2}).result(timeout=300).model  # doctest: +ELLIPSIS
    'local/doc-provider@ft-...'
"""

from __future__ import annotations

import importlib
from typing import Any

from dspy.clients.provider import Provider, TrainingJob
from dspy.clients.utils_finetune import TrainingStatus


# The trainer sits a layer above the engine (compound.tune imports compound.lm, never the reverse), so DSPy's call is
# handed to it by name, resolved only when DSPy trains: the way compound.widgets.VIEWS names views.
TRAINER = "compound.tune.provider:train_for_dspy"


class AdapterTrainingJob(TrainingJob):
    """DSPy's handle on one fine-tune; `status()` follows the compound job that trains it (listed with the other
    jobs, stoppable), and `cancel()` stops that job."""

    finetune_job = None  # the compound.tune.FinetuneJob, once training started

    def status(self) -> TrainingStatus:
        job = self.finetune_job
        if job is None:
            return TrainingStatus.pending
        return {"running": TrainingStatus.running, "stopping": TrainingStatus.running, "done": TrainingStatus.succeeded,
                "failed": TrainingStatus.failed, "stopped": TrainingStatus.cancelled}[job.status]

    def progress(self) -> float | None:
        """Fraction of the planned training steps done (None before training starts)."""
        return None if self.finetune_job is None else self.finetune_job.progress

    def cancel(self) -> bool:
        if self.finetune_job is not None:
            self.finetune_job.stop()
        return super().cancel()


class EngineProvider(Provider):
    """Fine-tunes the LoRA adapters of one loaded model for DSPy's weight optimizers."""

    def __init__(self, engine):
        super().__init__()
        self.finetunable = True
        self.TrainingJob = AdapterTrainingJob
        self.engine = engine  # the LM's HFEngine: pickles as a reference to the weights, never the weights

    @property
    def loaded(self):
        return self.engine.loaded

    def __deepcopy__(self, memo) -> EngineProvider:
        return self  # program.deepcopy() must not copy the model it points to

    def finetune(self, job: AdapterTrainingJob, model: str, train_data: list[dict[str, Any]], train_data_format,
                 train_kwargs: dict[str, Any] | None = None) -> str:
        module, _, name = TRAINER.partition(":")
        train = getattr(importlib.import_module(module), name)
        return train(self.loaded, job, model, train_data, train_data_format, train_kwargs or {})
