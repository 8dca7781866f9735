"""One PEFT adapter trained on a copy of the served model that shares its weights, one optimizer step at a time.

The engine keeps serving the base model (and other adapters) from the same weight tensors while this trains: the
copy has its own modules (PEFT injects its layers there) but no second copy of the weights. A step:

1. forward over the batch; with a shared prefix (LoRA only), the prompt start every row shares (a predictor's
   instructions and demos) runs once and its K/V are broadcast to the rows, so each row computes only its own
   suffix; the gradients are the same as without sharing, the compute is not;
2. logits only at answer positions (the lm_head never runs on prompt tokens), cross-entropy on answer tokens only;
3. clip the gradient norm, AdamW step; bf16 autocast on CUDA, and gradient checkpointing there unless a shared
   prefix already spares most activations (transformers' checkpointing drops the K/V cache sharing needs).

Example:
    >>> from compound import adapters, testing
    >>> from compound.tune.config import TrainConfig, method_config
    >>> from compound.tune.data import collate, encode_chat
    >>> loaded = adapters.loaded_model_of(testing.tiny_served_lm("doc-trainer"))
    >>> trainer = AdapterTrainer(loaded, method_config("lora"), TrainConfig())
    >>> batch = collate([encode_chat(loaded.tokenizer, c["messages"]) for c in testing.reverse_chats(8)], 0, True)
    >>> trainer.step(batch, lr=2e-3) > 0        # the mean cross-entropy over the answer tokens
    True
"""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings

import torch

from compound.tune.config import TrainConfig, method_name
from compound.tune.data import Batch


class AdapterTrainer:
    """A PEFT model (LoRA, prefix or prompt tuning) over a weight-sharing copy of a loaded model, and its optimizer."""

    def __init__(self, loaded, peft_config, config: TrainConfig, init_tensors: dict | None = None,
                 shared_fraction: float = 0.0):
        from peft import get_peft_model, set_peft_model_state_dict

        from compound.lm.lora import unhooked_copy

        self.config = config
        self.method = method_name(peft_config)
        self.device = loaded.device
        cuda = self.device.type == "cuda"
        base = unhooked_copy(loaded.model)
        base.config.use_cache = False
        can_share = config.shared_prefix and self.method == "lora"
        checkpointing = config.gradient_checkpointing
        if checkpointing is None:  # CUDA: recompute activations, unless a shared prefix already saves most of them
            checkpointing = cuda and not (can_share and shared_fraction >= 0.5)
        # sharing the prefix needs the K/V cache, which gradient checkpointing drops (transformers' layers do)
        self.share_prefix = can_share and not checkpointing
        if checkpointing:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):  # seeded init, caller's RNG untouched
            # PEFT asks transformers 5 a deprecated question; nothing for the user to do
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            torch.manual_seed(config.seed)
            self.model = get_peft_model(base, peft_config)
        if init_tensors:
            set_peft_model_state_dict(self.model, init_tensors)
        self.model.train()
        bf16 = cuda and torch.cuda.is_bf16_supported() if config.bf16 is None else config.bf16
        self._autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if bf16
                          else contextlib.nullcontext())
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr_for(self.method),
                                           weight_decay=config.weight_decay)
        causal = self.model.get_base_model()
        self._decoder, self._head = causal.get_decoder(), causal.get_output_embeddings()
        # transformers 5.x renamed `past_key_values` to `cache` (the engine's runner checks the same way)
        self._cache_kw = "cache" if "cache" in inspect.signature(self._decoder.forward).parameters else "past_key_values"
        # models that post-process logits (softcapping, scaling) get them from their own forward
        self._own_head = self.method == "lora" and not any(
            getattr(causal.config, k, None) for k in ("final_logit_softcapping", "logit_scale", "logits_scaling"))

    @property
    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.params)

    # ---- one step ---------------------------------------------------------------------------------------------
    def step(self, batch: Batch, lr: float) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self._autocast:
            loss = self.loss(batch)
        loss.backward()
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def loss(self, batch: Batch) -> torch.Tensor:
        """Mean cross-entropy over the batch's answer tokens."""
        dev = self.device
        ids, mask, labels = batch.input_ids.to(dev), batch.attention_mask.to(dev), batch.labels.to(dev)
        targets = labels[:, 1:]
        keep = targets != -100  # position t predicts token t+1: only where that token is part of an answer
        if not self._own_head:
            logits = self.model(input_ids=ids, attention_mask=mask).logits[:, -ids.shape[1] :]  # after virtual tokens
            return torch.nn.functional.cross_entropy(logits[:, :-1][keep].float(), targets[keep])
        if batch.prefix_ids is not None and self.share_prefix:
            hidden = self._hidden_after_shared_prefix(batch.prefix_ids.to(dev), ids, mask)
        else:
            hidden = self._decoder(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = self._head(hidden[:, :-1][keep])  # (answer tokens, vocab): the lm_head skips prompt positions
        return torch.nn.functional.cross_entropy(logits.float(), targets[keep])

    def _hidden_after_shared_prefix(self, prefix: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Hidden states of each row's suffix; the shared prefix (1, P) runs once and its K/V serve every row."""
        from transformers import DynamicCache

        n, p = ids.shape[0], prefix.shape[1]
        shared = DynamicCache(config=self.model.get_base_model().config)
        self._decoder(input_ids=prefix, use_cache=True, **{self._cache_kw: shared})
        rows = DynamicCache(config=self.model.get_base_model().config)
        for i, layer in enumerate(shared.layers):  # (1, H, P, D) -> (n, H, P, D); gradients flow back summed
            rows.update(layer.keys.expand(n, -1, -1, -1), layer.values.expand(n, -1, -1, -1), i)
        positions = torch.arange(p, p + ids.shape[1], device=ids.device)[None].expand(n, -1)
        full_mask = torch.cat([mask.new_ones(n, p), mask], dim=1)
        return self._decoder(input_ids=ids, attention_mask=full_mask, position_ids=positions, use_cache=True,
                             **{self._cache_kw: rows}).last_hidden_state

    # ---- state ----------------------------------------------------------------------------------------------------
    def adapter(self) -> tuple[dict, dict]:
        """(PEFT config as a JSON-ready dict, adapter tensors on CPU): PEFT's saved format."""
        from peft import get_peft_model_state_dict

        config = self.model.peft_config["default"].to_dict()
        config["inference_mode"] = True
        tensors = {k: v.detach().to("cpu", copy=True) for k, v in get_peft_model_state_dict(self.model).items()}
        return config, tensors

    def optimizer_state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """AdamW's state as tensors (for safetensors) plus its JSON-ready hyperparameters."""
        sd = self.optimizer.state_dict()
        tensors = {f"{i}.{k}": v.detach().cpu() for i, st in sd["state"].items() for k, v in st.items()}
        return tensors, {"param_groups": sd["param_groups"]}

    def load_state(self, adapter_tensors: dict, optimizer_tensors: dict, optimizer_meta: dict) -> None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(self.model, adapter_tensors)
        state: dict = {}
        for key, value in optimizer_tensors.items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict({"state": state, "param_groups": optimizer_meta["param_groups"]})


def lr_at(step: int, progress: float, config: TrainConfig, peak: float) -> float:
    """Linear warm-up over `warmup_steps`, then constant, or cosine down to 10% of `peak` as `progress` goes 0 -> 1.

    `progress` is the share of the run done: of the planned steps, or of the time budget when that ends it first,
    so a time-bound run still anneals before it stops.
    """
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return peak
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
