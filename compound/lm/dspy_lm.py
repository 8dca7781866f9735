"""The DSPy boundary: `LM(...)` returns a real `dspy.LM` whose engine is compound's batched engine.

DSPy 3.4's `Engine` protocol (`complete`, `stream`, `close`) is the only place compound talks to DSPy's LM layer;
DSPy keeps caching, retries, history and callbacks. Here the engine's typed errors become the DSPy errors users catch:

    prompt too long            -> dspy.ContextWindowExceededError (naming the likely cause)
    bad request values         -> dspy.LMInvalidRequestError
    request_timeout passed     -> dspy.LMTimeoutError (DSPy retries timeouts `num_retries` times)
    request failed / engine    -> dspy.LMUnexpectedError (cause attached: RequestFailedError, EngineDeadError, ...)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from collections.abc import AsyncIterator, Iterator

import dspy
from dspy import lm15
from dspy.lm15 import (
    Message,
    Request,
    Response,
    StreamDeltaEvent,
    StreamEndEvent,
    StreamStartEvent,
    TextDelta,
    TextPart,
    TokenLogprob,
    TopLogprob,
    Usage,
)

from compound.lm.config import EngineConfig
from compound.lm.engine import Engine
from compound.lm.errors import ContextLengthError, InvalidRequestError
from compound.lm.loading import LoadedModel, find_loaded, load, loaded_models
from compound.lm.prompt import prompt_ids, render_prompt
from compound.lm.provider import EngineProvider
from compound.lm.refs import resolve, scheme_of
from compound.lm.saved import adapter_class, attach
from compound.lm.sampling import SamplingParams
from compound.lm.sequence import Result

CHAT_ADAPTER_STOP = "[[ ## completed ## ]]"


def _system_text(system) -> str | None:
    if system is None or isinstance(system, str):
        return system
    return "".join(getattr(p, "text", "") or "" for p in system)


class HFEngine:
    """DSPy `Engine` over one loaded model. Thread-safe: every call joins the shared continuous batch.

    Copies of a program share it (`__deepcopy__` returns self); pickles and saved programs carry a reference
    (`reference()`) that re-attaches to the model already loaded in the process, or loads it once.
    `close()` is a no-op: the engine is shared by every copy; `compound.lm.close(lm)` stops it.
    """

    supports_response_schema = False
    supports_function_calling = False
    supports_reasoning = False
    supported_params = frozenset({"max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "logprobs",
                                  "top_logprobs"})

    def __init__(self, loaded: LoadedModel, device: str = "auto", dtype: str = "auto", default_max_tokens: int = 512,
                 request_timeout: float | None = None):
        self.loaded = loaded
        self._device, self._dtype = device, dtype
        self.default_max_tokens = default_max_tokens
        self.request_timeout = request_timeout

    # ---- DSPy Engine protocol -----------------------------------------------------------------------------------
    def complete(self, request: Request) -> Response:
        seq, engine = self._submit(request)
        timeout = self._timeout(request)
        try:
            result = seq.future.result(timeout)
        except concurrent.futures.TimeoutError:
            engine.abort(seq.id)
            raise lm15.TimeoutError(f"{request.model}: no answer within {timeout} s; the request was aborted "
                                    "(raise request_timeout, or lower max_tokens)") from None
        except BaseException as exc:
            engine.abort(seq.id)  # KeyboardInterrupt while waiting: the request must not decode on for nobody
            self._reraise(exc, request)
        return self._response(request, result)

    def stream(self, request: Request) -> Iterator:
        seq, engine = self._submit(request, stream=True)
        try:
            yield StreamStartEvent(model=request.model)
            while (delta := seq.stream.get()) is not None:
                yield StreamDeltaEvent(TextDelta(delta, part_index=0))
            try:
                result = seq.future.result()
            except BaseException as exc:
                self._reraise(exc, request)
            yield StreamEndEvent(result.finish_reason, self._usage(result), self._provider_data(result))
        finally:
            if not seq.future.done():  # the consumer stopped reading: abort, do not decode on for nobody
                engine.abort(seq.id)

    def close(self) -> None:
        """Nothing: the engine is shared by every copy of the LM. `compound.lm.close(lm)` stops it."""

    # ---- sharing and serialization ------------------------------------------------------------------------------
    def __deepcopy__(self, memo) -> "HFEngine":
        return self

    def reference(self) -> dict:
        """What a saved or pickled LM records: a portable reference to the weights, never the weights."""
        loaded = self.loaded
        return {
            "source": loaded.source,
            "name": loaded.name,
            "revision": loaded.revision,
            "fingerprint": loaded.fingerprint,
            "device": self._device,
            "dtype": self._dtype,
            "engine_config": dataclasses.asdict(loaded.engine_config) if loaded.engine_config else None,
            "dspy_adapter": loaded.dspy_adapter,
            "default_max_tokens": self.default_max_tokens,
            "request_timeout": self.request_timeout,
        }

    def __reduce__(self):
        return _attach_engine, (self.reference(),)

    def dump_state(self) -> dict:
        return self.reference()

    @classmethod
    def load_state(cls, state: dict) -> "HFEngine":
        return _attach_engine(state)

    # ---- request translation ------------------------------------------------------------------------------------
    def _submit(self, request: Request, stream: bool = False):
        loaded = self.loaded
        _, _, adapter = request.model.partition("@")
        if adapter and adapter not in loaded.adapters:
            raise lm15.InvalidRequestError(
                f"adapter {adapter!r} is not loaded on {loaded.name!r} (loaded: {loaded.adapters or 'none'}); "
                f"fine-tune or load it before calling {request.model!r}, or call 'local/{loaded.name}' for the base"
            )
        messages = [{"role": m.role, "content": m.text or ""} for m in request.messages]
        system = _system_text(request.system)
        _check_prompt_format(loaded, request, system, messages)
        text = render_prompt(loaded.tokenizer, system, messages)
        c = request.config
        engine = loaded.engine
        try:
            params = SamplingParams(
                max_tokens=c.max_tokens or self.default_max_tokens,
                temperature=0.0 if c.temperature is None else c.temperature,
                top_p=1.0 if c.top_p is None else c.top_p,
                top_k=c.top_k or 0,
                seed=c.seed,
                stop=tuple(c.stop or ()),
                logprobs=c.logprobs,
            )
            return engine.submit(prompt_ids(loaded.tokenizer, text), params, adapter or None, stream=stream), engine
        except InvalidRequestError as exc:
            self._reraise(exc, request)

    def _timeout(self, request: Request) -> float | None:
        metadata = (request.config.extensions or {}).get("metadata") or {}
        return metadata.get("timeout_s", self.request_timeout)

    def _reraise(self, exc: BaseException, request: Request):
        """Raise the engine's typed error as the lm15 error DSPy maps to what users catch (others as they are)."""
        if isinstance(exc, ContextLengthError):
            raise lm15.ContextLengthError(context_length_message(exc, request, self.loaded)) from exc
        if isinstance(exc, InvalidRequestError):
            raise lm15.InvalidRequestError(f"{request.model}: {exc}") from exc
        raise exc

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

    def _logprobs(self, r: Result) -> tuple[TokenLogprob, ...] | None:
        if r.logprobs is None:
            return None
        decode = self.loaded.tokenizer.decode
        return tuple(
            TokenLogprob(token=decode([c.token]), logprob=c.logprob, token_id=c.token,
                         top=tuple(TopLogprob(token=decode([t]), logprob=lp, token_id=t) for t, lp in c.top))
            for c in r.logprobs
        )

    def _response(self, request: Request, r: Result) -> Response:
        return Response(
            id=None,
            model=request.model,
            message=Message.assistant(TextPart(r.text)),
            finish_reason=r.finish_reason,
            usage=self._usage(r),
            provider_data=self._provider_data(r),
            logprobs=self._logprobs(r),
        )


class AsyncHFEngine:
    """DSPy `AsyncEngine` twin: awaits the same batched engine without blocking the event loop. Cancelling the
    awaiting task aborts the request (its slot is free at the next step)."""

    def __init__(self, sync: HFEngine):
        self.sync = sync

    async def complete(self, request: Request) -> Response:
        seq, engine = self.sync._submit(request)
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(seq.future), self.sync._timeout(request))
        except asyncio.TimeoutError:
            engine.abort(seq.id)
            raise lm15.TimeoutError(f"{request.model}: no answer within the request timeout; the request was aborted")
        except BaseException as exc:  # CancelledError included: the request leaves the batch at the next step
            engine.abort(seq.id)
            self.sync._reraise(exc, request)
        return self.sync._response(request, result)

    async def stream(self, request: Request) -> AsyncIterator:
        events = self.sync.stream(request)
        sentinel = object()
        try:
            while (event := await asyncio.to_thread(next, events, sentinel)) is not sentinel:
                yield event
        finally:
            await asyncio.to_thread(events.close)  # aborts the request if it is still running

    async def aclose(self) -> None:
        """Nothing: see `HFEngine.close`."""

    def __deepcopy__(self, memo) -> "AsyncHFEngine":
        return self

    def __reduce__(self):
        return _attach_async_engine, (self.sync.reference(),)

    def dump_state(self) -> dict:
        return self.sync.dump_state()

    @classmethod
    def load_state(cls, state: dict) -> "AsyncHFEngine":
        return _attach_async_engine(state)


# Field markers of DSPy's ChatAdapter and JSONAdapter prompts ("[[ ## ticket ## ]]"); CompactAdapter never writes them.
_CHAT_FIELD_MARKER = "[[ ## "


def _check_prompt_format(loaded: LoadedModel, request: Request, system: str | None, messages: list[dict]) -> None:
    """Refuse, with the fix, a prompt formatted by another DSPy adapter than the one the model was trained to read.

    A zoo model reads only `CompactAdapter` prompts; a ChatAdapter prompt gives it nothing it can answer, and DSPy
    would report a parse error about the model's output instead of the missing `dspy.configure(adapter=...)`.
    """
    wanted = adapter_class(loaded.dspy_adapter)
    if wanted is None or isinstance(dspy.settings.adapter, wanted):
        return
    if any(_CHAT_FIELD_MARKER in (text or "") for text in [system, *(m["content"] for m in messages)]):
        current = dspy.settings.adapter
        used = type(current).__name__ if current is not None else "ChatAdapter (DSPy's default)"
        raise lm15.InvalidRequestError(
            f"{request.model}: {loaded.name!r} reads {wanted.__name__} prompts, but {used} formatted this one; "
            f"call dspy.configure(adapter={wanted.__name__}()) (or use dspy.context(adapter=...) around the call)"
        )


def context_length_message(exc: ContextLengthError, request: Request, loaded: LoadedModel) -> str:
    """Why a prompt overflowed, from what the request shows: the adapter that formatted it, demo turns, the system
    prompt's share; and what to do."""
    count = lambda text: len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    system = _system_text(request.system) or ""
    turns = list(request.messages)
    demos = sum(1 for m in turns if m.role == "assistant")
    system_tokens = count(system)
    demo_tokens = sum(count(m.text or "") for m in turns[:-1])
    total = max(exc.prompt_tokens, 1)
    adapter = dspy.settings.adapter
    adapter_name = type(adapter).__name__ if adapter is not None else "ChatAdapter (DSPy's default)"
    causes = []
    wanted = adapter_class(loaded.dspy_adapter)
    if wanted is not None and not isinstance(adapter, wanted):
        causes.append(
            f"{loaded.name!r} reads {wanted.__name__} prompts, but {adapter_name} formatted this one (its prompts are "
            f"longer): dspy.configure(adapter={wanted.__name__}())"
        )
    parts = [  # each part's share of the prompt, with what shrinks it; the big ones are the likely cause
        (demo_tokens, f"{demos} demos take {demo_tokens} tokens ({100 * demo_tokens // total}%): use fewer "
                      "(e.g. max_bootstrapped_demos=1, max_labeled_demos=1 for BootstrapFewShot or MIPROv2)"),
        (system_tokens, f"the system prompt (instructions and field descriptions) takes {system_tokens} tokens "
                        f"({100 * system_tokens // total}%): shorten the instructions, or use a terser adapter"),
        (total - system_tokens - demo_tokens, "the input itself is long: shorten it"),
    ]
    demos_decide = demos and exc.prompt_tokens - demo_tokens < exc.max_seq_len  # without them it would fit
    causes += [advice for tokens, advice in sorted(parts, key=lambda p: -p[0])
               if tokens >= 0.25 * total or (demos_decide and tokens == demo_tokens)]
    limit = getattr(loaded.model.config, "max_position_embeddings", None)
    return (
        f"{request.model}: the prompt of {exc.prompt_tokens} tokens does not fit the context of {exc.max_seq_len} "
        f"tokens (system prompt {system_tokens} tokens, {demos} demo turns {demo_tokens} tokens, formatted by "
        f"{adapter_name}). Likely cause: {'; or '.join(causes)}."
        + (f" Or raise EngineConfig(max_seq_len=...) (the model allows {limit})." if limit and limit > exc.max_seq_len
           else "")
    )


def _attach_engine(reference: dict) -> HFEngine:
    return HFEngine(attach(reference), reference.get("device", "auto"), reference.get("dtype", "auto"),
                    reference.get("default_max_tokens", 512), reference.get("request_timeout"))


def _attach_async_engine(reference: dict) -> AsyncHFEngine:
    return AsyncHFEngine(_attach_engine(reference))


def _from_model_string(model: str):
    """`local/<name>[@adapter]` -> (LoadedModel or a reference to load, adapter)."""
    base, _, adapter = model.removeprefix("local/").partition("@")
    loaded = find_loaded(base)
    if loaded is not None:
        return loaded, adapter
    if base.startswith("zoo-"):
        return f"zoo:{base.removeprefix('zoo-')}", adapter
    names = [m.name for m in loaded_models()]
    raise ValueError(
        f"no model named {base!r} is loaded in this process (loaded: {names or 'none'}); load it first with "
        f"compound.LM('<hub id or folder>', name={base!r}), or use 'local/zoo-tiny' / 'local/zoo-small'"
    )


def LM(
    model,
    *,
    tokenizer=None,
    name: str | None = None,
    revision: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    config: EngineConfig | None = None,
    request_timeout: float | None = None,
    **lm_kwargs,
) -> dspy.LM:
    """A `dspy.LM` served in-process by compound's continuous-batching engine.

    `model` is a hub id, a local folder, a loaded transformers model (then `tokenizer=` and `name=` too), a model
    string `local/<name>[@adapter]` of a model already loaded (`local/zoo-tiny`, `local/zoo-small` load the zoo's), or
    a reference such as `zoo:small`. Loading happens once per model in the process; `lm_kwargs` go to `dspy.LM`
    (temperature, max_tokens, cache, ...). ChatAdapter's `[[ ## completed ## ]]` is a stop string unless you pass
    `stop=`. A fingerprint of the weights rides in `metadata`, so DSPy's disk cache never answers from other weights
    under the same name. `request_timeout` (seconds) aborts a call that waits longer and raises `LMTimeoutError`.

    Example:
        >>> import dspy, compound as cp
        >>> lm = cp.LM("HuggingFaceTB/SmolLM2-135M-Instruct")       # doctest: +SKIP
        >>> dspy.configure(lm=lm)                                   # doctest: +SKIP
        >>> small = cp.LM("zoo:small")      # the offline zoo's model, by reference (what a saved program stores)
        >>> small.model, cp.LM("local/zoo-small").model
        ('local/zoo-small', 'local/zoo-small')
    """
    adapter, defaults, source, dspy_adapter = "", None, None, None
    if isinstance(model, str) and model.startswith("local/"):
        model, adapter = _from_model_string(model)
    if isinstance(model, LoadedModel):
        loaded = model
    else:
        if isinstance(model, str) and scheme_of(model):
            resolved = resolve(model)
            source, dspy_adapter, defaults = model, resolved.dspy_adapter, resolved.lm_defaults
            model, name = resolved.path, name or resolved.name
            device = resolved.device if device == "auto" and resolved.device else device
        loaded = load(model, tokenizer=tokenizer, name=name, revision=revision, device=device, dtype=dtype,
                      engine_config=config, source=source, dspy_adapter=dspy_adapter, lm_defaults=defaults)
    if adapter and adapter not in loaded.adapters:
        raise ValueError(
            f"adapter {adapter!r} is not loaded on {loaded.name!r} (loaded adapters: {loaded.adapters or 'none'}); "
            f"fine-tune or load it first, or use 'local/{loaded.name}' for the base model"
        )
    engine = HFEngine(loaded, device=device, dtype=str(dtype).removeprefix("torch."), request_timeout=request_timeout)
    lm_kwargs = {**loaded.lm_defaults, **lm_kwargs}
    lm_kwargs.setdefault("temperature", 0.0)
    lm_kwargs.setdefault("max_tokens", 512)
    lm_kwargs.setdefault("stop", [CHAT_ADAPTER_STOP])
    lm_kwargs["metadata"] = {**(lm_kwargs.get("metadata") or {}), "compound_weights": loaded.fingerprint}
    lm_kwargs.setdefault("provider", EngineProvider(engine))  # dspy.BootstrapFinetune trains LoRA adapters in-process
    model_string = f"local/{loaded.name}" + (f"@{adapter}" if adapter else "")
    return dspy.LM(model_string, engine=engine, async_engine=AsyncHFEngine(engine), **lm_kwargs)


def engine_of(lm: dspy.LM) -> Engine:
    """The batched engine behind a `dspy.LM` made by `compound.LM` (for statistics and tuning)."""
    spec = getattr(lm, "_engine_spec", None)
    if not isinstance(spec, HFEngine):
        raise TypeError(f"{lm!r} is not served by compound; make it with compound.LM(...)")
    return spec.loaded.engine
