"""Adapters served by the engine: per-row LoRA in mixed batches, prefix and prompt tuning as K/V prefixes.

PEFT trains adapters; the engine serves the same weights without PEFT's per-adapter Python loop, and requests for the
base model and for any number of adapters share one running batch.

- **LoRA.** Each target Linear of the served model gets a forward hook that adds its low-rank update row by row. The
  A and B matrices of the resident adapters are stacked per layer, `A: (S, r, in)` and `(B * scaling).T: (S, r, out)`,
  with slot 0 all zeros (the base model). A mixed batch projects every row through all S slots with one matmul, masks
  out the slots that are not the row's own (a static 0/1 buffer, `mask`) and expands with a second matmul, in prefill
  and decode alike: two dense matmuls per layer whatever the mix (measured on CPU: faster than a per-row gather and
  batched matmuls), and since the buffer's address never changes, a captured CUDA graph replays any mix. Batches
  without a LoRA row skip the math, batches of one adapter use its own matrices. Adapters of a lower rank are
  zero-padded to the stack's rank (exact). At most `capacity` adapters are resident: the least recently used one that
  no running sequence needs makes room.
- **Prefix tuning** trains a K/V prefix per layer; **prompt tuning** trains P input embeddings, whose K/V the engine
  computes once. Either way a sequence on such an adapter starts with P virtual positions whose K/V are copied into
  its slot when it is admitted, and its prompt prefills after them at positions P.. (as PEFT runs it); the prefix
  cache then keeps its prompt blocks like any other.

Everything that changes the model or the stacks runs on the engine's scheduler thread (admission), between forward
passes; callers only register adapters by name.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import math
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from compound.lm.errors import InvalidRequestError

MIXED = -1  # LoraBank.mode: rows use different slots


@dataclass(eq=False)
class ServedAdapter:
    """One adapter version the engine serves. `Sequence.adapter` holds it; equal and hashed by `name#fingerprint`,
    so the prefix cache never mixes K/V of two versions trained under the same name."""

    name: str
    fingerprint: str
    kind: str  # "lora" or "prefix" (prefix tuning and prompt tuning)
    lora: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)  # path -> (A, B*s)
    rank: int = 0
    prefix_kv: torch.Tensor | None = field(default=None, repr=False)  # (layers, 2, kv_heads, P, head_dim)
    prompt_embeddings: torch.Tensor | None = field(default=None, repr=False)  # (P, hidden): K/V computed on first use
    virtual_tokens: int = 0

    def __post_init__(self):
        self.key = f"{self.name}#{self.fingerprint}"
        self._hash = hash(self.key)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        return isinstance(other, ServedAdapter) and other.key == self.key

    def __str__(self) -> str:
        return self.name


def tensors_fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, shapes and values: a retrained adapter under the same name gets a new fingerprint."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


# ---- PEFT's saved format -> served form ---------------------------------------------------------------------------
def from_peft(name: str, config: dict, tensors: dict[str, torch.Tensor], model: torch.nn.Module) -> ServedAdapter:
    """Convert a PEFT adapter (`adapter_config.json` as a dict, `adapter_model.safetensors` tensors) for serving."""
    peft_type = config.get("peft_type", "")
    peft_type = str(getattr(peft_type, "value", peft_type)).upper()  # "LORA" in JSON, PeftType.LORA in to_dict()
    fingerprint = tensors_fingerprint(tensors)
    if peft_type == "LORA":
        lora, rank = _lora_from_peft(name, config, tensors, model)
        return ServedAdapter(name, fingerprint, "lora", lora=lora, rank=rank)
    if peft_type in ("PREFIX_TUNING", "PROMPT_TUNING"):
        emb = tensors.get("prompt_embeddings")
        if emb is None:
            raise ValueError(f"adapter {name!r} ({peft_type}) has no `prompt_embeddings` tensor; save it with PEFT's "
                             "save_pretrained")
        p = int(config["num_virtual_tokens"])
        if peft_type == "PROMPT_TUNING":
            return ServedAdapter(name, fingerprint, "prefix", prompt_embeddings=emb.detach().cpu(), virtual_tokens=p)
        layers, heads = int(config["num_layers"]), int(config["num_attention_heads"])
        head_dim = int(config["token_dim"]) // heads
        # PEFT's layout (peft_model.get_prompt): (P, layers * 2, heads, head_dim), key then value per layer
        kv = emb.detach().cpu().view(p, layers, 2, heads, head_dim).permute(1, 2, 3, 0, 4).contiguous()
        return ServedAdapter(name, fingerprint, "prefix", prefix_kv=kv, virtual_tokens=p)
    raise ValueError(
        f"adapter {name!r} is a {peft_type or 'unknown'} adapter; compound's engine serves LORA, PREFIX_TUNING and "
        "PROMPT_TUNING adapters. Merge other kinds into the weights (PeftModel.merge_and_unload) and serve the merged "
        "model with cp.LM(...)"
    )


def _lora_from_peft(name, config, tensors, model) -> tuple[dict, int]:
    from peft.utils.other import get_pattern_key

    unsupported = [k for k in ("use_dora", "lora_bias", "fan_in_fan_out") if config.get(k)]
    if config.get("modules_to_save"):
        unsupported.append("modules_to_save")
    if unsupported:
        raise ValueError(
            f"adapter {name!r} uses {', '.join(unsupported)}; compound's engine serves plain LoRA on Linear layers. "
            "Merge it into the weights (PeftModel.merge_and_unload) and serve the merged model with cp.LM(...)"
        )
    modules = dict(model.named_modules())
    rank_pattern, alpha_pattern = config.get("rank_pattern") or {}, config.get("alpha_pattern") or {}
    lora, rank = {}, 0
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            if ".lora_B." not in key:
                raise ValueError(f"adapter {name!r} has a tensor {key!r} that is not a LoRA A/B matrix of a Linear layer")
            continue
        path = key[: -len(".lora_A.weight")].removeprefix("base_model.model.")
        module = modules.get(path)
        if not isinstance(module, torch.nn.Linear):
            raise ValueError(f"adapter {name!r} targets {path!r}, which is not a Linear layer of the served model; "
                             "was it trained on another base model?")
        b = tensors[key.replace(".lora_A.", ".lora_B.")]
        r = a.shape[0]
        if a.shape[1] != module.in_features or b.shape != (module.out_features, r):
            raise ValueError(f"adapter {name!r}: {path} has A {tuple(a.shape)} and B {tuple(b.shape)}, the layer is "
                             f"{module.in_features} -> {module.out_features}; it was trained on another base model")
        alpha = alpha_pattern.get(get_pattern_key(alpha_pattern.keys(), path), config.get("lora_alpha", 8))
        declared = rank_pattern.get(get_pattern_key(rank_pattern.keys(), path), config.get("r", r))
        if declared != r:
            raise ValueError(f"adapter {name!r}: {path} has rank {r} but its config says {declared}")
        scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        lora[path] = (a.detach().float().cpu(), (b.detach().float() * scaling).cpu())
        rank = max(rank, r)
    if not lora:
        raise ValueError(f"adapter {name!r} holds no LoRA weights (no `*.lora_A.weight` tensors)")
    return lora, rank


# ---- per-row LoRA ---------------------------------------------------------------------------------------------------
class _LoraHook:
    """Forward hook of one target Linear: adds `x @ A[slot].T @ Bt[slot]` with each row's slot.

    Stacks: `A` (S, r, in) and `Bt` (S, r, out) = (B * scaling).T per slot. A mixed batch runs the rows through every
    resident slot at once, `(x @ A_all.T * mask) @ Bt_all` with `A_all` (S*r, in), `Bt_all` (S*r, out) and a 0/1 mask
    keeping each row's own slot: two dense matmuls whatever the mix, where a per-adapter loop would launch two per
    adapter and a per-row gather would copy the weights once per row.
    """

    def __init__(self, bank: LoraBank, module: torch.nn.Linear, slots: int, rank: int):
        self.bank = bank
        w = module.weight
        self.A = torch.zeros(slots, rank, module.in_features, dtype=w.dtype, device=w.device)
        self.Bt = torch.zeros(slots, rank, module.out_features, dtype=w.dtype, device=w.device)

    def __call__(self, module, args, out):
        mode = self.bank.mode
        if out.is_cuda and torch.cuda.is_current_stream_capturing():
            mode = MIXED  # a graph replays whatever mix of slots the mask buffer holds at replay time
        if mode is None:
            return None
        x = args[0]
        if mode != MIXED:  # every row on one adapter
            h = x @ self.A[mode].T
            bt = self.Bt[mode]
        else:
            n = x.shape[0]
            h = x @ self.A.view(-1, x.shape[-1]).T  # (n, [q,] S*r): every slot's low-rank projection
            h.mul_(self.bank.mask[:n].view(n, *[1] * (h.dim() - 2), -1))  # keep each row's own slot
            bt = self.Bt.view(-1, out.shape[-1])
        out.view(-1, out.shape[-1]).addmm_(h.view(-1, h.shape[-1]), bt)  # expand and add in one op
        return out

    def grow(self, slots: int, rank: int) -> None:
        s, r, _ = self.A.shape
        A = self.A.new_zeros(slots, rank, self.A.shape[2])
        Bt = self.Bt.new_zeros(slots, rank, self.Bt.shape[2])
        A[:s, :r], Bt[:s, :r] = self.A, self.Bt
        self.A, self.Bt = A, Bt


class LoraBank:
    """The resident LoRA adapters of one model: stacked A/B per hooked layer, one slot each, least recently used first."""

    def __init__(self, model: torch.nn.Module, capacity: int):
        self.model, self.capacity = model, capacity
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.hooks: dict[str, _LoraHook] = {}
        self.rank = 0
        self.num_slots = 1  # slot 0: zeros, the base model
        self.resident: OrderedDict[ServedAdapter, int] = OrderedDict()
        self.mask = torch.zeros(0, 0, dtype=self.dtype, device=self.device)  # (rows, S*r): row i keeps its slot
        self._rows = 0
        self._local = threading.local()  # `mode` is per thread: only the engine's own passes add LoRA updates
        self.layout_version = 0  # bumped when captured CUDA graphs would no longer match the layers or buffers

    @property
    def mode(self) -> int | None:
        """None: no LoRA row in this thread's pass (any other thread using the model sees the base model); a slot:
        every row on that adapter; MIXED: rows on different slots."""
        return getattr(self._local, "mode", None)

    @mode.setter
    def mode(self, value: int | None) -> None:
        self._local.mode = value

    def slot_of(self, adapter) -> int:
        return self.resident.get(adapter, 0) if adapter is not None and adapter.kind == "lora" else 0

    def set_rows(self, adapters: list) -> None:
        """Per-row slots for the next forward pass (the runner calls this with each row's adapter)."""
        if not self.hooks:
            return
        slots = [self.slot_of(a) for a in adapters]
        distinct = set(slots)
        self.mode = None if distinct == {0} else slots[0] if len(distinct) == 1 else MIXED
        self.ensure_rows(len(slots))
        # the mask is written for every pass once hooks exist: a replayed CUDA graph always reads it
        owner = torch.arange(self.num_slots, device=self.device).repeat_interleave(self.rank)  # (S*r,)
        rows = torch.tensor(slots).to(self.device, non_blocking=True)
        self.mask[: len(slots)].copy_(rows[:, None] == owner[None, :])

    def ensure_rows(self, n: int) -> None:
        self._rows = max(self._rows, n)
        if self.mask.shape != (self._rows, self.num_slots * self.rank):
            self.mask = torch.zeros(self._rows, self.num_slots * self.rank, dtype=self.dtype, device=self.device)
            self.layout_version += 1

    def make_resident(self, adapter: ServedAdapter, busy: set) -> bool:
        """Give `adapter` a slot (evicting the least recently used adapter not in `busy`); False if none is free."""
        if adapter in self.resident:
            self.resident.move_to_end(adapter)
            self._evict_down_to(self.capacity, busy | {adapter})  # the budget may have been lowered since
            return True
        if not self._evict_down_to(self.capacity - 1, busy):
            return False
        used = set(self.resident.values())
        free = next((s for s in range(1, self.num_slots) if s not in used), None)
        if free is None:
            self._grow(self.num_slots + 1, self.rank)
            free = self.num_slots - 1
        self._write(free, adapter)
        self.resident[adapter] = free
        return True

    def _evict_down_to(self, n: int, busy: set) -> bool:
        """Evict least recently used adapters not in `busy` until at most `n` stay; False if that is impossible."""
        while len(self.resident) > n:
            victim = next((a for a in self.resident if a not in busy), None)
            if victim is None:
                return False
            self.resident.pop(victim)
        return True

    def _write(self, slot: int, adapter: ServedAdapter) -> None:
        if adapter.rank > self.rank:
            self._grow(self.num_slots, adapter.rank)
        modules = dict(self.model.named_modules())
        for path in adapter.lora.keys() - self.hooks.keys():
            hook = _LoraHook(self, modules[path], self.num_slots, self.rank)
            self.hooks[path] = hook
            modules[path].register_forward_hook(hook)
            self.layout_version += 1
        for path, hook in self.hooks.items():
            hook.A[slot].zero_()
            hook.Bt[slot].zero_()
            if path in adapter.lora:
                a, b = adapter.lora[path]
                r = a.shape[0]
                hook.A[slot, :r].copy_(a)
                hook.Bt[slot, :r].copy_(b.T)

    def _grow(self, slots: int, rank: int) -> None:
        for hook in self.hooks.values():
            hook.grow(slots, rank)
        self.num_slots, self.rank = slots, rank
        self.ensure_rows(self._rows)  # the mask's width follows
        self.layout_version += 1


# ---- the adapters of one served model: what the engine's scheduler and runner call -------------------------------
class ServedAdapters:
    """Adapters registered on one model by name, with the engine-side hooks for admission and forward passes."""

    def __init__(self, model: torch.nn.Module, capacity: int = 8):
        self.model = model
        self.bank = LoraBank(model, capacity)
        self._by_name: dict[str, ServedAdapter] = {}
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        """How many LoRA adapters may be resident at once (the LRU budget)."""
        return self.bank.capacity

    @capacity.setter
    def capacity(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"`capacity` must be at least 1, got {value}")
        self.bank.capacity = value

    # -- registration (any thread) --------------------------------------------------------------------------------
    def add(self, adapter: ServedAdapter) -> None:
        with self._lock:
            self._by_name[adapter.name] = adapter

    def remove(self, name: str) -> None:
        with self._lock:
            self._by_name.pop(name, None)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._by_name)

    def get(self, name: str) -> ServedAdapter | None:
        with self._lock:
            return self._by_name.get(name)

    def resolve(self, name: str | None) -> ServedAdapter | None:
        """The adapter a new request names (None: the base model); a clear error if it is not registered."""
        if name is None or isinstance(name, ServedAdapter):
            return name
        adapter = self.get(name)
        if adapter is None:
            raise InvalidRequestError(f"adapter {name!r} is not loaded on this model (loaded: {self.names() or 'none'}); "
                             "load it with cp.adapters.load(...) or fine-tune it first")
        return adapter

    def virtual_tokens(self, adapter: ServedAdapter | None) -> int:
        return adapter.virtual_tokens if adapter is not None else 0

    # -- engine thread ----------------------------------------------------------------------------------------------
    def reserve(self, seq, running: list) -> bool:
        """Admission: make the sequence's LoRA resident; False means wait until a running sequence frees a slot."""
        adapter = seq.adapter
        if adapter is None or adapter.kind != "lora":
            return True
        with self._lock:
            return self.bank.make_resident(adapter, {s.adapter for s in running})

    def load_prefix(self, seq, kv, slot: int) -> int:
        """Copy a prefix/prompt-tuning adapter's K/V into `slot` (the sequence's); returns the positions now computed."""
        adapter = seq.adapter
        if adapter is None or adapter.kind != "prefix" or seq.num_computed >= adapter.virtual_tokens:
            return seq.num_computed
        if adapter.prefix_kv is None:
            adapter.prefix_kv = self._prompt_kv(adapter.prompt_embeddings)
        p = adapter.virtual_tokens
        kv.kv[:, :, slot, :, :p] = adapter.prefix_kv.to(kv.kv.device, kv.kv.dtype)
        return p

    @torch.inference_mode()
    def _prompt_kv(self, embeddings: torch.Tensor) -> torch.Tensor:
        """K/V (layers, 2, kv_heads, P, head_dim) of prompt-tuning embeddings at positions 0..P-1."""
        from transformers import DynamicCache

        model = self.model
        p = next(model.parameters())
        self.bank.mode = None  # the base model's K/V: no LoRA row in this pass
        cache = DynamicCache(config=model.config)
        cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        model(inputs_embeds=embeddings[None].to(p.device, p.dtype), use_cache=True, **{cache_kw: cache})
        return torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in cache.layers])

    def set_rows(self, seqs: list) -> None:
        self.bank.set_rows([s.adapter for s in seqs])

    @property
    def layout_version(self) -> int:
        return self.bank.layout_version


_SERVED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SERVED_LOCK = threading.Lock()


def served_adapters(model: torch.nn.Module, rows: int = 0) -> ServedAdapters:
    """The adapter registry of a served model (created on first use; holds nothing until an adapter is added).

    `rows`: the engine's largest batch, so the per-row slot buffer never moves under a captured CUDA graph.
    """
    with _SERVED_LOCK:
        served = _SERVED.get(model)
        if served is None:
            served = _SERVED[model] = ServedAdapters(model)
        served.bank.ensure_rows(rows)
        return served


def serve_adapter(loaded, name: str, config: dict, tensors: dict[str, torch.Tensor]) -> ServedAdapter:
    """Make `local/<base>@<name>` callable: convert a PEFT adapter and register it on the loaded model's engine.

    Registering a name again replaces the adapter for new requests (with a new fingerprint); running ones finish on
    the old weights.

    Example:
        >>> import compound as cp
        >>> from compound.testing import reverse_chats, tiny_served_lm
        >>> lm = cp.finetune(tiny_served_lm("doc-serve"), reverse_chats(), name="reverse-v1", max_steps=1).result()
        >>> config, tensors, _ = cp.adapters.read("reverse-v1")
        >>> serve_adapter(cp.adapters.loaded_model_of(lm), "reverse-copy", config, tensors).kind
        'lora'
    """
    adapter = from_peft(name, config, tensors, loaded.model)
    served_adapters(loaded.model).add(adapter)
    if name not in loaded.adapters:
        loaded.adapters.append(name)
    return adapter


def unserve_adapter(loaded, name: str) -> None:
    """Stop serving adapter `name` on the loaded model (requests already running finish)."""
    served_adapters(loaded.model).remove(name)
    if name in loaded.adapters:
        loaded.adapters.remove(name)


def unhooked_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` that shares its weights and buffers but not the engine's LoRA hooks: what a trainer wraps
    with PEFT while the engine keeps serving the original (no second copy of the base weights)."""
    served = _SERVED.get(model)
    lock = served._lock if served is not None else threading.Lock()
    with lock:
        shared = [*model.parameters(), *model.buffers()]
        if served is not None:  # the hooks are dropped below: never copy them (or the bank they point to)
            shared += [served.bank, *served.bank.hooks.values()]
        clone = copy.deepcopy(model, {id(obj): obj for obj in shared})
    for module in clone.modules():
        for key in [k for k, hook in module._forward_hooks.items() if isinstance(hook, _LoraHook)]:
            del module._forward_hooks[key]
            module._forward_hooks_with_kwargs.pop(key, None)
            module._forward_hooks_always_called.pop(key, None)
    return clone
