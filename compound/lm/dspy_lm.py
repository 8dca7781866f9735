"""The DSPy boundary: `LM(...)` returns a real `dspy.LM` whose engine is compound's batched engine.

DSPy 3.4's `Engine` protocol (`complete`, `stream`, `close`) is the only place compound talks to DSPy's LM layer;
DSPy keeps caching, retries, history and callbacks.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Iterator

import dspy
from dspy.lm15 import (
    Message,
    Request,
    Response,
    StreamDeltaEvent,
    StreamEndEvent,
    StreamStartEvent,
    TextDelta,
    TextPart,
    Usage,
)

from compound.lm.engine import Engine, EngineConfig
from compound.lm.loading import LoadedModel, find_loaded, load
from compound.lm.prompt import prompt_ids, render_prompt
from compound.lm.provider import EngineProvider
from compound.lm.sampling import SamplingParams
from compound.lm.sequence import Result

CHAT_ADAPTER_STOP = "[[ ## completed ## ]]"


def _system_text(system) -> str | None:
    if system is None or isinstance(system, str):
        return system
    return "".join(getattr(p, "text", "") or "" for p in system)


class HFEngine:
    """DSPy `Engine` over one loaded model. Thread-safe: every call joins the shared continuous batch.

    Copies of a program share it (`__deepcopy__` returns self) and saved programs find it again by name, so the
    weights exist once per process.
    """

    supports_response_schema = False
    supports_function_calling = False
    supports_reasoning = False
    supported_params = frozenset({"max_tokens", "temperature", "top_p", "top_k", "seed", "stop"})

    def __init__(self, loaded: LoadedModel, device: str = "auto", dtype: str = "auto", default_max_tokens: int = 512):
        self.loaded = loaded
        self._device, self._dtype = device, dtype
        self.default_max_tokens = default_max_tokens

    # ---- DSPy Engine protocol -----------------------------------------------------------------------------------
    def complete(self, request: Request) -> Response:
        return self._response(request, self._submit(request).future.result())

    def stream(self, request: Request) -> Iterator:
        seq = self._submit(request, stream=True)
        yield StreamStartEvent(model=request.model)
        while (delta := seq.stream.get()) is not None:
            yield StreamDeltaEvent(TextDelta(delta, part_index=0))
        result = seq.future.result()
        yield StreamEndEvent(result.finish_reason, self._usage(result), self._provider_data(result))

    def close(self) -> None:
        if self.loaded._engine is not None:
            self.loaded._engine.close()

    # ---- sharing and serialization ------------------------------------------------------------------------------
    def __deepcopy__(self, memo) -> "HFEngine":
        return self

    def dump_state(self) -> dict:
        return {
            "name": self.loaded.name,
            "model_id": self.loaded.model_id,
            "revision": self.loaded.revision,
            "device": self._device,
            "dtype": self._dtype,
            "default_max_tokens": self.default_max_tokens,
        }

    @classmethod
    def load_state(cls, state: dict) -> "HFEngine":
        loaded = find_loaded(state["name"])
        if loaded is None:
            if state["model_id"].startswith("memory:"):
                raise ValueError(
                    f"model {state['name']!r} was handed to compound as an object and is not loaded in this process; "
                    f"call compound.LM(model, tokenizer=..., name={state['name']!r}) before loading the program"
                )
            loaded = load(state["model_id"], name=state["name"], revision=state["revision"],
                          device=state["device"], dtype=state["dtype"])
        return cls(loaded, state["device"], state["dtype"], state.get("default_max_tokens", 512))

    # ---- request translation ------------------------------------------------------------------------------------
    def _submit(self, request: Request, stream: bool = False):
        loaded = self.loaded
        _, _, adapter = request.model.partition("@")
        if adapter and adapter not in loaded.adapters:
            raise ValueError(
                f"adapter {adapter!r} is not loaded on {loaded.name!r} (loaded: {loaded.adapters or 'none'}); "
                f"fine-tune or load it before calling {request.model!r}, or call 'local/{loaded.name}' for the base"
            )
        messages = [{"role": m.role, "content": m.text or ""} for m in request.messages]
        text = render_prompt(loaded.tokenizer, _system_text(request.system), messages)
        c = request.config
        params = SamplingParams(
            max_tokens=c.max_tokens or self.default_max_tokens,
            temperature=0.0 if c.temperature is None else c.temperature,
            top_p=1.0 if c.top_p is None else c.top_p,
            top_k=c.top_k or 0,
            seed=c.seed,
            stop=tuple(c.stop or ()),
        )
        return loaded.engine.submit(prompt_ids(loaded.tokenizer, text), params, adapter or None, stream=stream)

    @staticmethod
    def _usage(r: Result) -> Usage:
        return Usage(input_tokens=r.prompt_tokens, output_tokens=r.output_tokens)

    @staticmethod
    def _provider_data(r: Result) -> dict:
        return {
            "queue_s": round(r.queue_s, 6),
            "latency_s": round(r.latency_s, 6),
            "ttft_s": round(r.ttft_s, 6),
            "device_s": round(r.device_s, 6),
            "prefix_hit_tokens": r.prefix_hit_tokens,
        }

    def _response(self, request: Request, r: Result) -> Response:
        return Response(
            id=None,
            model=request.model,
            message=Message.assistant(TextPart(r.text)),
            finish_reason=r.finish_reason,
            usage=self._usage(r),
            provider_data=self._provider_data(r),
        )


class AsyncHFEngine:
    """DSPy `AsyncEngine` twin: awaits the same batched engine without blocking the event loop."""

    def __init__(self, sync: HFEngine):
        self.sync = sync

    async def complete(self, request: Request) -> Response:
        seq = self.sync._submit(request)
        return self.sync._response(request, await asyncio.wrap_future(seq.future))

    async def stream(self, request: Request) -> AsyncIterator:
        events = self.sync.stream(request)
        sentinel = object()
        while (event := await asyncio.to_thread(next, events, sentinel)) is not sentinel:
            yield event

    async def aclose(self) -> None:
        self.sync.close()

    def __deepcopy__(self, memo) -> "AsyncHFEngine":
        return self

    def dump_state(self) -> dict:
        return self.sync.dump_state()

    @classmethod
    def load_state(cls, state: dict) -> "AsyncHFEngine":
        return cls(HFEngine.load_state(state))


def LM(
    model,
    *,
    tokenizer=None,
    name: str | None = None,
    revision: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    config: EngineConfig | None = None,
    **lm_kwargs,
) -> dspy.LM:
    """A `dspy.LM` served in-process by compound's continuous-batching engine.

    `model` is a hub id, a local folder, or a loaded transformers model (then `tokenizer=` and `name=` too). Loading
    happens once per (model, revision, device) in the process; `lm_kwargs` go to `dspy.LM` (temperature, max_tokens,
    cache, ...). ChatAdapter's `[[ ## completed ## ]]` is a stop string unless you pass `stop=`. A fingerprint of the
    weights rides in `metadata` so DSPy's on-disk cache never answers from other weights under the same name.

    Example:
        >>> import dspy, compound as cp
        >>> lm = cp.LM("HuggingFaceTB/SmolLM2-135M-Instruct")       # doctest: +SKIP
        >>> dspy.configure(lm=lm)                                   # doctest: +SKIP
    """
    loaded = load(model, tokenizer=tokenizer, name=name, revision=revision, device=device, dtype=dtype,
                  engine_config=config)
    engine = HFEngine(loaded, device=device, dtype=str(dtype).removeprefix("torch."))
    lm_kwargs.setdefault("temperature", 0.0)
    lm_kwargs.setdefault("max_tokens", 512)
    lm_kwargs.setdefault("stop", [CHAT_ADAPTER_STOP])
    lm_kwargs["metadata"] = {**(lm_kwargs.get("metadata") or {}), "compound_weights": loaded.fingerprint}
    lm_kwargs.setdefault("provider", EngineProvider(loaded))  # dspy.BootstrapFinetune trains LoRA adapters in-process
    return dspy.LM(f"local/{loaded.name}", engine=engine, async_engine=AsyncHFEngine(engine), **lm_kwargs)


def engine_of(lm: dspy.LM) -> Engine:
    """The batched engine behind a `dspy.LM` made by `compound.LM` (for statistics and tuning)."""
    spec = getattr(lm, "_engine_spec", None)
    if not isinstance(spec, HFEngine):
        raise TypeError(f"{lm!r} is not served by compound; make it with compound.LM(...)")
    return spec.loaded.engine
