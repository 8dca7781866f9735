"""The optimizer tests' task: capital questions for compound.testing's capitals Llama, plus its adapter and metric."""

from __future__ import annotations

import dspy
from dspy.utils.exceptions import AdapterParseError

# Countries the tiny model was not trained on: it answers them wrongly, which gives optimizers something to improve.
UNSEEN = {"Kenya": "Nairobi", "Chile": "Santiago", "Egypt": "Cairo", "Canada": "Ottawa"}


class RawTextFallbackAdapter(dspy.ChatAdapter):
    """ChatAdapter that, for one-output signatures, takes an unparseable completion as that field's text.

    A tiny model cannot write MIPROv2's `[[ ## proposed_instruction ## ]]` answers; with this adapter its raw text
    becomes the proposed instruction (as GEPA does with reflection text) instead of aborting the run.
    """

    def __init__(self):
        super().__init__(use_json_adapter_fallback=False)

    def parse(self, signature, completion):
        try:
            return super().parse(signature, completion)
        except AdapterParseError:
            if len(signature.output_fields) == 1:
                return {next(iter(signature.output_fields)): completion.strip()}
            raise


def examples(capitals: dict[str, str]) -> list[dspy.Example]:
    return [
        dspy.Example(question=f"What is the capital of {country}?", answer=city).with_inputs("question")
        for country, city in capitals.items()
    ]


def exact_match(example, prediction, trace=None) -> float:
    return float(str(prediction.answer).strip() == example.answer)
