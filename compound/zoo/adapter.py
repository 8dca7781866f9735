"""`CompactAdapter`: a DSPy adapter whose prompts are short enough for models of a few million parameters.

DSPy's ChatAdapter spends ~200 tokens of field headers and format reminders on a one-field signature; measured while
planning the zoo, that left a 6M-parameter model at chance after minutes of training, while this format
(~17 tokens) let the same model learn the task in seconds. The rendering is:

    system     the signature's instructions
    user       one `name: value` line per input field
    assistant  one `name: value` line per output field

Field descriptions and type notes are not rendered (a tiny model cannot read them); typed output fields are still
parsed with DSPy's `parse_value`. The zoo models are pretrained on exactly this rendering, so `dspy.Predict` works on
them out of the box; ChatAdapter stays the right choice for hub models.

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
from typing import Any

from dspy.adapters.chat_adapter import ChatAdapter
from dspy.adapters.utils import apply_output_field_defaults, format_field_value, parse_value
from dspy.signatures.signature import Signature
from dspy.utils.exceptions import AdapterParseError

_FIELD_LINE = re.compile(r"^\s*(\w+)\s*:\s?(.*)$")


class CompactAdapter(ChatAdapter):
    """Short `instructions / field: value` prompts for small models; parses `name: value` lines back.

    With a single output field a bare answer (no `name:` prefix) is accepted too, so a model that answers in plain
    text still parses. `format_finetune_data` returns chat messages in the same format, so `BootstrapFinetune` and
    compound's trainers learn exactly the prompts they will be served.

    Example:
        >>> import dspy, compound as cp
        >>> dspy.configure(lm=cp.zoo.lm("small"), adapter=cp.CompactAdapter())   # doctest: +SKIP
        >>> dspy.Predict("expression -> total", "Add the numbers.")(expression="12 + 30").total   # doctest: +SKIP
        '42'
    """

    def __init__(self, callbacks=None, use_native_function_calling: bool = False):
        # A ChatAdapter subclass so DSPy's fine-tuning (BootstrapFinetune) takes its chat data; every format method
        # is overridden below. No JSON fallback: a model this small cannot answer in JSON either.
        super().__init__(callbacks=callbacks, use_native_function_calling=use_native_function_calling,
                         use_json_adapter_fallback=False)

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
                raise AdapterParseError(
                    adapter_name="CompactAdapter",
                    signature=signature,
                    lm_response=completion,
                    message=f"field {name!r}: cannot parse {text!r} as {outputs[name].annotation}: {exc}",
                ) from None
        fields = apply_output_field_defaults(signature, fields)
        if fields.keys() != outputs.keys():
            raise AdapterParseError(
                adapter_name="CompactAdapter",
                signature=signature,
                lm_response=completion,
                parsed_result=fields,
            )
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
