"""`CompactAdapter`: a DSPy adapter whose prompts are short enough for models of a few million parameters.

DSPy's ChatAdapter spends ~200 tokens of field headers and format reminders on a one-field signature; measured while
planning the zoo, that left a 6M-parameter model at chance after minutes of training, while this format
(~17 tokens) let the same model learn the task in seconds. The rendering is:

    system     the signature's instructions
    user       one `name: value` line per input field
    assistant  one `name: value` line per output field

Field descriptions and type notes are not rendered (a tiny model cannot read them); typed output fields are still
parsed with DSPy's `parse_value`. Demos are user/assistant turns before the input, as in every DSPy adapter. The zoo
models are pretrained on exactly this rendering, zero-shot and with demos, so `dspy.Predict` and the few-shot
optimizers work on them out of the box; ChatAdapter stays the right choice for hub models.

Streaming: `dspy.streamify(program, stream_listeners=[dspy.streaming.StreamListener("answer")])` streams each output
field's value, as it does with DSPy's own adapters (`CompactStreamListener` teaches DSPy's listener this format).

Example:
    >>> import dspy, compound as cp
    >>> adapter = cp.CompactAdapter()
    >>> adapter.format(dspy.Signature("ticket -> category", "Classify the ticket."), [], {"ticket": "App crashes."})
    [{'role': 'system', 'content': 'Classify the ticket.'}, {'role': 'user', 'content': 'ticket: App crashes.'}]
    >>> adapter.parse(dspy.Signature("ticket -> category"), "category: technical")
    {'category': 'technical'}
"""

from __future__ import annotations

import re
import textwrap
from queue import Queue
from typing import Any

from dspy.adapters.chat_adapter import ChatAdapter
from dspy.adapters.utils import apply_output_field_defaults, format_field_value, parse_value
from dspy.dsp.utils.settings import settings
from dspy.signatures.signature import Signature
from dspy.streaming.streaming_listener import StreamListener
from dspy.utils.exceptions import AdapterParseError, DSPyError

_FIELD_LINE = re.compile(r"^\s*(\w+)\s*:\s?(.*)$")


class CompactAdapter(ChatAdapter):
    """Short `instructions / field: value` prompts for small models; parses `name: value` lines back.

    With a single output field a bare answer (no `name:` prefix) is accepted too, so a model that answers in plain
    text still parses. `format_finetune_data` returns chat messages in the same format, so `BootstrapFinetune` and
    compound's trainers learn exactly the prompts they will be served.

    Example:
        >>> import dspy, compound as cp
        >>> triage = dspy.Predict(dspy.Signature("ticket -> category", "Classify the support ticket."))
        >>> triage.lm = cp.zoo.lm("small")            # this predictor's own LM (a keyword `lm=` would go to the LM call)
        >>> with dspy.context(adapter=cp.CompactAdapter()):
        ...     triage(ticket="I was charged twice for order 12345.").category
        'billing'
    """

    def __init__(self, callbacks=None, use_native_function_calling: bool = False):
        # A ChatAdapter subclass so DSPy's fine-tuning (BootstrapFinetune) takes its chat data; every format method
        # is overridden below. No JSON fallback: a model this small cannot answer in JSON either.
        super().__init__(callbacks=callbacks, use_native_function_calling=use_native_function_calling,
                         use_json_adapter_fallback=False)

    def __call__(self, lm, lm_kwargs, signature, demos, inputs):
        _teach_stream_listeners()
        try:
            return super().__call__(lm, lm_kwargs, signature, demos, inputs)
        except AdapterParseError as exc:
            raise CompactParseError.from_dspy(exc) from None

    async def acall(self, lm, lm_kwargs, signature, demos, inputs):
        _teach_stream_listeners()
        try:
            return await super().acall(lm, lm_kwargs, signature, demos, inputs)
        except AdapterParseError as exc:
            raise CompactParseError.from_dspy(exc) from None

    def format_system_message(self, signature: type[Signature]) -> str:
        return textwrap.dedent(signature.instructions).strip()

    def format_field_description(self, signature: type[Signature]) -> str:
        return ""  # deliberately not rendered: see the module docstring

    def format_field_structure(self, signature: type[Signature]) -> str:
        return ""

    def format_task_description(self, signature: type[Signature]) -> str:
        return self.format_system_message(signature)

    def format_user_message_content(
        self,
        signature: type[Signature],
        inputs: dict[str, Any],
        prefix: str = "",
        suffix: str = "",
        main_request: bool = False,
    ) -> str:
        lines = [prefix] if prefix else []
        for name, info in signature.input_fields.items():
            if name in inputs:
                lines.append(f"{name}: {format_field_value(field_info=info, value=inputs[name])}")
        if suffix:
            lines.append(suffix)
        return "\n".join(lines)

    def format_assistant_message_content(
        self,
        signature: type[Signature],
        outputs: dict[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        lines = []
        for name, info in signature.output_fields.items():
            value = outputs.get(name, missing_field_message)
            lines.append(f"{name}: {format_field_value(field_info=info, value=value)}")
        return "\n".join(lines)

    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        outputs = signature.output_fields
        sections: dict[str, list[str]] = {}
        current: str | None = None
        for line in completion.strip().splitlines():
            match = _FIELD_LINE.match(line)
            if match and match.group(1) in outputs and match.group(1) not in sections:
                current = match.group(1)
                sections[current] = [match.group(2)]
            elif current is not None:
                sections[current].append(line)
        if not sections and len(outputs) == 1 and completion.strip():
            sections[next(iter(outputs))] = [completion.strip()]

        fields = {}
        for name, lines in sections.items():
            text = "\n".join(lines).strip()
            try:
                fields[name] = parse_value(text, outputs[name].annotation)
            except (ValueError, TypeError) as exc:
                type_name = getattr(outputs[name].annotation, "__name__", outputs[name].annotation)
                raise CompactParseError(signature, completion, f"cannot parse {name} {text!r} as {type_name} ({exc})",
                                        fields) from None
        fields = apply_output_field_defaults(signature, fields)
        if fields.keys() != outputs.keys():
            missing = [name for name in outputs if name not in fields]
            raise CompactParseError(signature, completion, f"no {', '.join(missing)}", fields)
        return fields

    def format_finetune_data(
        self,
        signature: type[Signature],
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
        outputs: dict[str, Any],
    ) -> dict[str, list[Any]]:
        """Chat messages (system, demos, user, assistant) in the compact format, as BootstrapFinetune expects."""
        messages = self.format(signature=signature, demos=demos, inputs=inputs)
        messages.append({"role": "assistant", "content": self.format_assistant_message_content(signature, outputs)})
        return {"messages": messages}


class CompactParseError(AdapterParseError):
    """An answer `CompactAdapter` could not read. Its message is one line: DSPy logs one per failed example.

    Example:
        >>> import dspy, compound as cp
        >>> cp.CompactAdapter().parse(dspy.Signature("ticket -> category, order_id"), "category: billing")
        Traceback (most recent call last):
        ...
        compound.zoo.adapter.CompactParseError: CompactAdapter: no order_id in answer 'category: billing' (expected...
    """

    def __init__(self, signature: type[Signature], lm_response: str, reason: str, parsed_result=None):
        # AdapterParseError's own message spans ~10 lines; keep its attributes, write one line
        self.adapter_name, self.signature, self.lm_response = "CompactAdapter", signature, lm_response
        self.parsed_result = parsed_result
        shown = lm_response if len(lm_response) <= 80 else lm_response[:77] + "..."
        problem = f"{reason} in answer {shown!r}" if lm_response.strip() else "the model's answer was empty"
        expected = " and ".join(f"`{name}: ...`" for name in signature.output_fields)
        DSPyError.__init__(self, f"CompactAdapter: {problem} (expected {expected} lines)")

    @classmethod
    def from_dspy(cls, exc: AdapterParseError) -> CompactParseError:
        """The one-line form of an AdapterParseError that DSPy raised around this adapter (e.g. an empty answer)."""
        if isinstance(exc, cls):
            return exc
        missing = [name for name in exc.signature.output_fields if name not in (exc.parsed_result or {})]
        return cls(exc.signature, str(exc.lm_response or ""), f"no {', '.join(missing)}", exc.parsed_result)


class CompactStreamListener(StreamListener):
    """DSPy's `StreamListener`, able to follow `name: value` lines as well as DSPy's own adapters' formats.

    A field's value starts after `name:` and ends where the next output field's `name:` line starts (or with the
    response). DSPy 3.4's listener looks adapters up by exact class name and has no extension point (dspy#8629), so
    `CompactAdapter` turns the plain `StreamListener`s of a `dspy.streamify` call into this subclass when it runs;
    with any other adapter it behaves exactly like its parent.

    Example:
        >>> import asyncio, dspy, compound as cp
        >>> from compound.testing import scripted_lm
        >>> predict = dspy.Predict("question -> answer"); predict.lm = scripted_lm(["answer: Paris, France"])
        >>> listener = dspy.streaming.StreamListener(signature_field_name="answer")
        >>> stream = dspy.streamify(predict, stream_listeners=[listener])
        >>> async def chunks():
        ...     return [c.chunk async for c in stream(question="Capital of France?") if hasattr(c, "chunk")]
        >>> with dspy.context(adapter=cp.CompactAdapter()):
        ...     "".join(asyncio.run(chunks()))
        'Paris, France'
    """

    def receive(self, chunk):
        if isinstance(settings.adapter, CompactAdapter):
            self.adapter_identifiers.setdefault(type(settings.adapter).__name__, self._compact_identifiers())
        return super().receive(chunk)

    def _other_outputs(self) -> list[str]:
        return [name for name in self.predict.signature.output_fields if name != self.signature_field_name]

    def _compact_identifiers(self) -> dict[str, Any]:
        others = self._other_outputs()
        # The next field's header starts a line; DSPy strips the buffer it searches, so its start counts as one.
        next_field = rf"(?:^|\n)\s*(?:{'|'.join(map(re.escape, others))})\s*:" if others else r"(?!)"  # never matches
        return {
            "start_identifier": f"{self.signature_field_name}:",
            "end_identifier": re.compile(next_field),
            "start_indicator": self.signature_field_name[:1],
            "end_pattern_prefixes": [],
            "end_pattern_contains": None,
        }

    def _could_form_end_identifier(self, concat_message: str, adapter_name: str) -> bool:
        if not isinstance(settings.adapter, CompactAdapter):
            return super()._could_form_end_identifier(concat_message, adapter_name)
        # Hold tokens back while the last line is, or could still become, the next field's `name:` header.
        raw = "".join(self.field_end_queue.queue)
        if "\n" not in raw:
            return False
        if self.adapter_identifiers[adapter_name]["end_identifier"].search(raw):
            return True
        tail = raw.rsplit("\n", 1)[1].replace(" ", "")
        return any(f"{name}:".startswith(tail) for name in self._other_outputs())

    def flush(self) -> str:
        if not isinstance(settings.adapter, CompactAdapter):
            return super().flush()
        text = "".join(self.field_end_queue.queue)
        self.field_end_queue = Queue()
        end = self.adapter_identifiers[type(settings.adapter).__name__]["end_identifier"].search(text)
        return text[: end.start()] if end else text


def _teach_stream_listeners() -> None:
    # Called by CompactAdapter before each LM call: the listeners of an active dspy.streamify() learn this format.
    for listener in settings.stream_listeners or []:
        if type(listener) is StreamListener:
            listener.__class__ = CompactStreamListener
