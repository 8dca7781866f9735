"""`FinetuneJob`: one adapter trained on a background thread, watched through plain models and stopped at will.

The run, top to bottom:
1. data: chat messages from the examples or bootstrapped traces (`compound.tune.data`), then token ids;
2. a PEFT adapter on a weight-sharing copy of the served model (`AdapterTrainer`), or the last checkpoint on resume;
3. the loop: length-bucketed batches, a dev evaluation through the engine every epoch (or `eval_every` steps), the
   best adapter and a resumable checkpoint written at each one, early stopping, the time budget and `stop()` checked
   at every step boundary;
4. the best adapter (by dev score; the last one without a valset) saved to `cp.adapters`, served by the engine, and
   its `dspy.LM` assigned to the target's predictors.

Live state for views and scripts: `loss` (LineChart of train loss), `dev` (LineChart of dev score and best so far),
`evals` (Table, one row per evaluation), `steps` (Progress), and `stats()` (step, epoch, loss, dev, tokens/s, ETA,
memory). It prints as text and renders as static HTML.
"""

from __future__ import annotations

import html
import math
import resource
import shutil
import sys
import time
from typing import Any

import dspy
import torch

from compound import adapters as registry
from compound.jobs import Job, JobStopped
from compound.observe import Column, LineChart, Progress, Table
from compound.tune import checkpoint
from compound.tune.config import TrainConfig, method_name
from compound.tune.data import (bootstrap_chats, collate, data_hash, describe, direct_chats, encode_chat,
                                epoch_batches, has_labels, shared_fraction)
from compound.tune.target import Target, chat_score, program_score, with_lm
from compound.tune.trainer import AdapterTrainer, lr_at

EVAL_COLUMNS = [
    Column("step"), Column("epoch", format=".2f"), Column("train_loss", "train loss", ".4f"),
    Column("dev_score", "dev score", ".3f"), Column("best", "best", ".3f"),
    Column("tokens_per_s", "tokens/s", ",.0f"), Column("elapsed_s", "elapsed s", ".1f"),
]


class FinetuneJob(Job):
    """A running (or finished) `cp.finetune`. `result()` returns the adapter's `dspy.LM` (a model string when DSPy's
    provider asked); `stop()` ends at the next step and keeps the best adapter so far.

    Example:
        >>> import compound as cp
        >>> from compound.testing import reverse_chats, tiny_served_lm
        >>> job = cp.finetune(tiny_served_lm("doc-job"), reverse_chats(), name="reverse-v1", max_steps=10_000)
        >>> unwatch = job.watch(lambda job: job.step >= 2 and job.stop())   # or the view's Stop button
        >>> lm = job.result(); job.status, job.step, lm.model
        ('stopped', 2, 'local/doc-job@reverse-v1')
    """

    kind = "finetune"

    def __init__(self, target: Target, peft_config, config: TrainConfig, *, name: str, examples=None, chats=None,
                 metric=None, valset=None, teacher=None, bootstrap: bool | None = None, dspy_adapter=None,
                 init: tuple[str | None, dict | None] = (None, None), resume: bool = False,
                 settings: dict | None = None):
        super().__init__(f"finetune {name}")
        self.target, self.peft_config, self.config, self.adapter_name = target, peft_config, config, name
        self.method = method_name(peft_config)
        self.examples, self.chats, self.valset = examples, chats, valset
        self.metric, self.teacher, self.bootstrap, self.dspy_adapter = metric, teacher, bootstrap, dspy_adapter
        (self.init_from, self.init_tensors), self.resume = init, resume  # a stored adapter to continue from
        self._settings = settings or {}
        # live state
        self.loss = LineChart(title="train loss", x_label="step", y_label="loss")
        self.dev = LineChart(title="dev score", x_label="step", y_label="score")
        self.evals = Table(EVAL_COLUMNS)
        self.steps = Progress(description="steps")
        self.step, self.planned_steps, self.train_loss = 0, None, None
        self.tokens_per_s, self.eta_s = None, None
        self.baseline_score = self.best_score = None
        self.best_step, self.end_reason, self.data_info = None, None, {}
        self._epoch, self._batch, self._evals_since_best, self._evaluated_at = 0, 0, 0, None
        self._train_s, self._eval_s, self._tokens = 0.0, 0.0, 0
        self._window: list[tuple[float, int]] = []  # (step seconds, tokens) of recent steps, for tokens/s and ETA
        self._val = None  # (encoded, answers) of held-out chats, for an LM fine-tuned on chat data

    # ---- the run --------------------------------------------------------------------------------------------------
    def run(self):
        loaded = self.target.loaded
        if loaded.device.type == "cpu":
            torch.set_num_threads(self.config.cpu_threads())
        with dspy.context(**self._settings):
            encoded = self._prepare_data()
            checkpoint.clean(self._run_dir)  # temporary folders of a run that was killed mid-write
            trainer = AdapterTrainer(loaded, self.peft_config, self.config, self.init_tensors,
                                     shared_fraction(encoded, self.config.batch_size, self.config.seed))
            if not (self.resume and self._restore(trainer)):
                self._evaluate_baseline()
            self._train(trainer, encoded)
            return self._finish(trainer)

    def _prepare_data(self) -> list:
        target, tok = self.target, self.target.loaded.tokenizer
        if self.chats is not None:
            chats, source = self.chats, "chats"
        elif self.bootstrap or (self.bootstrap is None and not has_labels(target.predictors, self.examples)):
            self.update(detail=f"bootstrapping traces on {len(self.examples)} examples")
            chats, kept = bootstrap_chats(target.program, target.predictors, self.examples, self.metric,
                                          self.dspy_adapter, teacher=self.teacher, threads=self.config.eval_threads,
                                          stop=lambda: self.stop_requested)
            source = f"bootstrapped ({kept} of {len(self.examples)} examples passed the metric)"
        else:
            chats, source = direct_chats(target.predictors, self.examples, self.dspy_adapter), "examples"
        if self.stop_requested:
            raise JobStopped(f"{self.name} was stopped before training started; nothing was saved")
        if not chats:
            raise ValueError(f"no training data: {source}; give labelled examples, a teacher, or a looser metric")
        eos = frozenset(self.target.loaded.engine.eos_ids)
        encoded = [encode_chat(tok, messages, eos) for messages in chats]
        self.data_info = {"sha256": data_hash(chats), "source": source, **describe(chats, encoded)}
        if self.chats is not None and self.valset is not None:
            self._val = ([encode_chat(tok, c["messages"], eos) for c in self.valset],
                         [c["messages"][-1]["content"] for c in self.valset])
        self.update(detail=f"{len(encoded)} training examples ({source})")
        return encoded

    def _train(self, trainer: AdapterTrainer, encoded: list) -> None:
        c = self.config
        per_epoch = math.ceil(len(encoded) / c.batch_size)
        self.planned_steps = c.max_steps or max(1, math.ceil(c.epochs * per_epoch))
        self.steps.update(total=self.planned_steps, value=self.step)
        eval_every = c.eval_every or per_epoch
        peak = c.lr_for(self.method)
        lengths, pad = [len(e) for e in encoded], self.target.loaded.tokenizer.pad_token_id or 0
        while self.step < self.planned_steps and self.end_reason is None:
            batches = epoch_batches(lengths, c.batch_size, c.seed, self._epoch)
            for index in range(self._batch, len(batches)):
                if self.step >= self.planned_steps or self._time_to_end():
                    break
                batch = collate([encoded[i] for i in batches[index]], pad, trainer.share_prefix)
                t0 = time.perf_counter()
                loss = trainer.step(batch, lr_at(self.step, self._progress(), c, peak))
                self.step, self._batch = self.step + 1, index + 1
                self._record_step(loss, time.perf_counter() - t0, batch.tokens, per_epoch)
                if self.step % eval_every == 0 or self.step == self.planned_steps:
                    self._evaluate(trainer)
                elif c.checkpoint_every and self.step % c.checkpoint_every == 0:
                    self._save_last(trainer)
            else:
                self._epoch, self._batch = self._epoch + 1, 0
        self.end_reason = self.end_reason or ("max_steps" if c.max_steps else "epochs")
        if self.end_reason != "stopped" and self._evaluated_at != self.step:
            self._evaluate(trainer)
        self._save_last(trainer)

    def _time_to_end(self) -> bool:
        if self.stop_requested:
            self.end_reason = "stopped"
        budget = self.config.max_time_s
        if budget is not None and self._train_s + self._eval_s + self._last_eval_s() >= budget:
            self.end_reason = "time budget"  # the final evaluation still fits in the budget
        return self.end_reason is not None

    def _progress(self) -> float:
        """Share of the run done: of the planned steps, or of the time budget if that runs out first."""
        done = self.step / self.planned_steps
        if self.config.max_time_s is not None:
            done = max(done, (self._train_s + self._eval_s) / self.config.max_time_s)
        return done

    def _last_eval_s(self) -> float:
        rows = self.evals.rows
        return self._eval_s / len(rows) if rows and self._has_dev else 0.0

    # ---- evaluation and checkpoints --------------------------------------------------------------------------------
    @property
    def _has_dev(self) -> bool:
        return self.valset is not None and (self.chats is not None or self.metric is not None)

    def _score(self, config: dict | None, tensors: dict | None) -> float:
        """Dev score through the engine: of the base model (config None) or of these adapter weights."""
        target, eval_name = self.target, f"{self.adapter_name}.training"
        if self.chats is not None:
            if config is not None:
                from compound.lm.lora import serve_adapter

                serve_adapter(target.loaded, eval_name, config, tensors)
            return chat_score(target.loaded, eval_name if config is not None else None, *self._val)
        lm = (target.lm.copy(cache=False) if config is None
              else registry.serve(target.lm, eval_name, config, tensors, cache=False))
        return program_score(with_lm(target, lm), self.valset, self.metric, self.config.eval_threads)

    def _evaluate_baseline(self) -> None:
        if not self._has_dev:
            return
        self.update(detail=f"dev score before training on {len(self.valset)} examples")
        self.baseline_score = self._score(None, None)
        self.dev.add_point("dev", 0, self.baseline_score)

    def _evaluate(self, trainer: AdapterTrainer) -> None:
        self._evaluated_at = self.step
        if not self._has_dev:
            return self._save_last(trainer)
        config, tensors = trainer.adapter()
        t0 = time.perf_counter()
        score = self._score(config, tensors)
        self._eval_s += time.perf_counter() - t0
        improved = self.best_score is None or score > self.best_score + self.config.min_delta
        self._evals_since_best = 0 if improved else self._evals_since_best + 1
        if self.best_score is None or score >= self.best_score:  # a tie goes to the adapter trained longer
            self.best_score, self.best_step = score, self.step
            checkpoint.write(self._run_dir / "best", config, tensors, {"score": score, "step": self.step})
        if self.config.patience and self._evals_since_best >= self.config.patience:
            self.end_reason = "early stopping"
        self.dev.add_point("dev", self.step, score)
        self.dev.add_point("best so far", self.step, self.best_score)
        self.evals.add_row({
            "step": self.step, "epoch": self._epochs_done, "train_loss": self.train_loss, "dev_score": score,
            "best": self.best_score, "tokens_per_s": self.tokens_per_s, "elapsed_s": round(self.elapsed_s, 1),
        })
        self.update(detail=f"step {self.step}: dev {score:.3f} (best {self.best_score:.3f} at step {self.best_step})")
        self._save_last(trainer)

    @property
    def _run_dir(self):
        return checkpoint.run_dir(self.adapter_name)

    def _save_last(self, trainer: AdapterTrainer) -> None:
        config, tensors = trainer.adapter()
        state = {
            "step": self.step, "epoch": self._epoch, "batch": self._batch, "method": self.method,
            "base_fingerprint": self.target.loaded.fingerprint,
            "data_sha256": self.data_info.get("sha256"), "best_score": self.best_score, "best_step": self.best_step,
            "baseline_score": self.baseline_score, "evals_since_best": self._evals_since_best,
            "train_s": self._train_s, "eval_s": self._eval_s, "tokens": self._tokens,
            "loss": self.loss.series.get("train loss", []), "dev": self.dev.series.get("dev", []),
            "evals": self.evals.rows,
        }
        checkpoint.write(self._run_dir / "last", config, tensors, state, trainer.optimizer_state())

    def _restore(self, trainer: AdapterTrainer) -> bool:
        """Continue from the last complete checkpoint of a run under this name; False if there is none."""
        folder = self._run_dir / "last"
        if not folder.is_dir():
            raise FileNotFoundError(f"nothing to resume for {self.adapter_name!r}: no checkpoint in {folder}; "
                                    "start without resume=True")
        _, tensors, state, optimizer = checkpoint.read(folder)
        if state["base_fingerprint"] != self.target.loaded.fingerprint:
            raise ValueError(f"the checkpoint of {self.adapter_name!r} was trained on weights {state['base_fingerprint']}"
                             f", but {self.target.loaded.name!r} has weights {self.target.loaded.fingerprint}; resume "
                             "on the same base model")
        if (state["data_sha256"], state["method"]) != (self.data_info["sha256"], self.method):
            raise ValueError(f"the checkpoint of {self.adapter_name!r} was trained with method {state['method']!r} on "
                             f"data {state['data_sha256']}, this run has {self.method!r} on {self.data_info['sha256']};"
                             " resume with the same data and method, or pick a new name")
        trainer.load_state(tensors, optimizer, state["optimizer"])
        self.step, self._epoch, self._batch = state["step"], state["epoch"], state["batch"]
        self.best_score, self.best_step = state["best_score"], state["best_step"]
        self.baseline_score, self._evals_since_best = state["baseline_score"], state["evals_since_best"]
        self._train_s, self._eval_s, self._tokens = state["train_s"], state["eval_s"], state["tokens"]
        for x, y in state["loss"]:
            self.loss.add_point("train loss", x, y)
        for x, y in state["dev"]:
            self.dev.add_point("dev", x, y)
        for row in state["evals"]:
            self.evals.add_row(row)
        self._evaluated_at = self.step
        self.update(detail=f"resumed at step {self.step}")
        return True

    def _finish(self, trainer: AdapterTrainer):
        from compound.lm.lora import serve_adapter, unserve_adapter

        if self.step == 0:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            raise JobStopped(f"{self.name} was stopped before its first training step; nothing was saved")
        best = self._run_dir / "best"
        if self.best_score is not None and best.is_dir():
            config, tensors, _, _ = checkpoint.read(best)
        else:
            config, tensors = trainer.adapter()
        loaded, name = self.target.loaded, self.adapter_name
        registry.save(name, config, tensors, self._manifest(config))
        unserve_adapter(loaded, f"{name}.training")
        if self.end_reason != "stopped":
            shutil.rmtree(self._run_dir, ignore_errors=True)  # a stopped run stays resumable
        score = "" if self.best_score is None else f", dev {self.best_score:.3f} (before: {self.baseline_score:.3f})"
        self.update(detail=f"{self.end_reason}: saved {name!r}{score}")
        self._changed()  # watchers (the view) hear every step; subscribers stay throttled
        if self.target.lm is None:  # DSPy's provider: it makes the LM from the model string
            serve_adapter(loaded, name, config, tensors)
            return f"local/{loaded.name}@{name}"
        lm = registry.serve(self.target.lm, name, config, tensors)
        for predictor in self.target.predictors:
            predictor.lm = lm
        return lm

    def _manifest(self, peft_config: dict) -> dict:
        loaded, lm = self.target.loaded, self.target.lm
        lm_kwargs = {k: v for k, v in (lm.kwargs if lm is not None else {}).items()
                     if k in ("temperature", "max_tokens", "stop")}
        if lm is not None:
            lm_kwargs["cache"] = lm.cache
        return {
            "base": {"name": loaded.name, "model_id": loaded.model_id, "revision": loaded.revision,
                     "fingerprint": loaded.fingerprint, "lm_kwargs": lm_kwargs},
            "method": self.method, "peft_type": peft_config.get("peft_type"), "started_from": self.init_from,
            "hyperparameters": self.config.as_dict(),
            "data": self.data_info,
            "dev": None if self.best_score is None else {
                "score": self.best_score, "baseline": self.baseline_score, "best_step": self.best_step,
                "examples": len(self.valset)},
            "training": {"steps": self.step, "end": self.end_reason, "train_s": round(self._train_s, 1),
                         "eval_s": round(self._eval_s, 1), "tokens_per_s": self.tokens_per_s},
        }

    # ---- live numbers ---------------------------------------------------------------------------------------------
    @property
    def _epochs_done(self) -> float:
        per_epoch = math.ceil(self.data_info.get("examples", 1) / self.config.batch_size)
        return round(self._epoch + self._batch / max(1, per_epoch), 2)

    def _record_step(self, loss: float, seconds: float, tokens: int, per_epoch: int) -> None:
        self._train_s += seconds
        self._tokens += tokens
        self._window = [*self._window[-19:], (seconds, tokens)]
        window_s = sum(s for s, _ in self._window)
        self.tokens_per_s = round(sum(t for _, t in self._window) / window_s) if window_s else None
        self.train_loss = loss if self.train_loss is None else 0.9 * self.train_loss + 0.1 * loss
        self.loss.add_point("train loss", self.step, self.train_loss)
        self.steps.update(value=self.step)
        remaining = (self.planned_steps - self.step) * window_s / len(self._window)
        evals_left = (self.planned_steps - self.step) / (self.config.eval_every or per_epoch) if self._has_dev else 0
        remaining += evals_left * self._last_eval_s()
        if self.config.max_time_s is not None:
            remaining = min(remaining, max(0.0, self.config.max_time_s - self._train_s - self._eval_s))
        self.eta_s = remaining
        self.update(progress=self.step / self.planned_steps)
        self._changed()  # watchers (the view) hear every step; subscribers stay throttled

    def stats(self) -> dict[str, str]:
        """Headline numbers as text: step, epoch, train loss, dev score, tokens/s, ETA, memory."""
        def num(value, fmt):
            return "–" if value is None else format(value, fmt)

        dev = num(self.best_score, ".3f")
        if self.baseline_score is not None:
            dev += f" (before {self.baseline_score:.3f})"
        return {
            "step": f"{self.step}/{self.planned_steps or '?'}",
            "epoch": num(self._epochs_done if self.data_info else None, ".2f"),
            "train loss": num(self.train_loss, ".4f"),
            "best dev": dev,
            "tokens/s": num(self.tokens_per_s, ",.0f"),
            "ETA": "–" if self.eta_s is None or self.done() else f"{int(self.eta_s // 60)}:{int(self.eta_s % 60):02d}",
            "memory": _peak_memory(self.target.loaded.device),
        }

    # ---- text and HTML ----------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        stats = " ".join(f"{k}={v}" for k, v in self.stats().items() if v != "–")
        return f"<FinetuneJob {self.adapter_name!r} {self.status} {self.elapsed_s:.1f}s {stats}>"

    def summary(self) -> str:
        """The run's record as text: status, headline numbers, how it ended, and one row per dev evaluation."""
        lines = [repr(self)]
        if self.detail:
            lines.append(self.detail)
        if self.error is not None:
            lines.append(f"failed: {type(self.error).__name__}: {self.error}")
        if self.evals.rows:
            lines.append(repr(self.evals))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        stats = " · ".join(f"{html.escape(k)}: {html.escape(v)}" for k, v in self.stats().items())
        return (f'<div class="compound-finetune"><b>{html.escape(self.name)}</b> <span>{html.escape(self.status)}'
                f"</span> {self.elapsed_s:.1f}s<br>{stats}{self.loss._repr_html_()}{self.dev._repr_html_()}"
                f"{self.evals._repr_html_()}</div>")


def _peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        n = torch.cuda.max_memory_allocated(device)
    else:  # the process's peak resident memory: ru_maxrss is KiB on Linux, bytes on macOS
        n = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"
