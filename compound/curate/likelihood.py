"""How likely a program's own model finds a label: one batched teacher-forced forward over prompt + answer.

The prompt is exactly what the model is served: the program's adapter formats the signature, demos and inputs
(`adapter.format`), and `compound.lm.prompt.render_prompt` turns the messages into the engine's prompt text. The
answer is the adapter's assistant message for the candidate outputs, followed by the chat template's end-of-turn,
so "1234" is not mistaken for a likely prefix of "12345".

Example:
    >>> import dspy, compound as cp
    >>> dspy.configure(adapter=cp.CompactAdapter())
    >>> classify = dspy.Predict(cp.zoo.tasks["triage"].signature)
    >>> classify.lm = cp.zoo.lm("small")       # the predictor's own LM (a keyword lm= would go to every LM call)
    >>> scorer = LabelScorer(classify)
    >>> scores = scorer.logprobs([{"ticket": "I was charged twice for order 12345."}] * 2,
    ...                          [{"category": "billing"}, {"category": "shipping"}])
    >>> (scores > -1).tolist()                 # log p(label | ticket): billing is near certain, shipping is not
    [True, False]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BATCH_SIZE = 64


def single_predictor(program: Any):
    """The one `dspy.Predict` inside `program` (a Predict, or a module with exactly one predictor)."""
    import dspy

    if isinstance(program, dspy.Predict):
        return program
    named = program.named_predictors() if hasattr(program, "named_predictors") else []
    if len(named) != 1:
        names = [name for name, _ in named]
        raise ValueError(
            f"program= must hold exactly one predictor whose labels are audited, found {len(named)} {names}; "
            f"pass the step itself, e.g. program=pipeline.{names[0] if names else 'step'}"
        )
    return named[0][1]


def _loaded_model(lm: Any):
    from compound.lm.dspy_lm import HFEngine

    spec = getattr(lm, "_engine_spec", None)
    if not isinstance(spec, HFEngine):
        raise TypeError(
            f"program= scores labels with its own model's likelihoods, which needs a compound LM "
            f"(cp.LM(...) or cp.zoo.lm(...)); its LM is {lm!r}"
        )
    return spec.loaded


class LabelScorer:
    """Log-likelihoods of candidate outputs under a predictor's own (compound-served) model."""

    def __init__(self, predictor: Any):
        import dspy

        self.predictor = single_predictor(predictor)
        lm = self.predictor.lm or dspy.settings.lm
        if lm is None:
            raise ValueError("the program has no LM: set program.lm = ... or dspy.configure(lm=...)")
        self.lm = lm
        self.loaded = _loaded_model(lm)
        self.adapter = dspy.settings.adapter or dspy.ChatAdapter()
        self.signature = self.predictor.signature

    # 1) the served prompt and the answer's tokens
    def _prompt(self, inputs: dict[str, Any]) -> tuple[str, list[dict[str, str]], str | None]:
        from compound.lm.prompt import render_prompt

        messages = self.adapter.format(self.signature, list(self.predictor.demos or []), inputs)
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
        rest = messages[1:] if system is not None else messages
        return render_prompt(self.loaded.tokenizer, system, rest), rest, system

    def _answer_text(self, prompt: str, rest: list[dict], system: str | None, outputs: dict[str, Any]) -> str:
        tokenizer = self.loaded.tokenizer
        content = self.adapter.format_assistant_message_content(self.signature, outputs)
        if getattr(tokenizer, "chat_template", None):
            convo = ([{"role": "system", "content": system}] if system else []) + rest
            try:
                full = tokenizer.apply_chat_template(
                    [*convo, {"role": "assistant", "content": content}], tokenize=False
                )
                if full.startswith(prompt):
                    return full[len(prompt):]
            except Exception:  # a template that refuses this shape: fall back to content + end of sequence
                pass
        return content + (tokenizer.eos_token or "")

    def _token_pairs(self, inputs: Sequence[dict], outputs: Sequence[dict]) -> list[tuple[list[int], list[int]]]:
        from compound.lm.prompt import prompt_ids

        tokenizer = self.loaded.tokenizer
        pairs, prompts = [], {}
        for inp, out in zip(inputs, outputs):
            key = tuple(sorted((k, str(v)) for k, v in inp.items()))
            if key not in prompts:
                text, rest, system = self._prompt(inp)
                prompts[key] = (text, rest, system, prompt_ids(tokenizer, text))
            text, rest, system, ids = prompts[key]
            answer = tokenizer(self._answer_text(text, rest, system, out), add_special_tokens=False)["input_ids"]
            pairs.append((ids, answer))
        return pairs

    # 2) one forward per batch: sum of log p(answer token | everything before it)
    def logprobs(self, inputs: Sequence[dict], outputs: Sequence[dict]) -> np.ndarray:
        """log p(outputs[i] | inputs[i]) under the model, one float per pair (summed over the answer's tokens)."""
        import torch

        pairs = self._token_pairs(inputs, outputs)
        model = self.loaded.model
        device = self.loaded.device
        limit = getattr(model.config, "max_position_embeddings", None)
        pad = self.loaded.tokenizer.pad_token_id or 0
        out = np.empty(len(pairs))
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))  # less padding
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            seqs = [pairs[i][0] + pairs[i][1] for i in batch]
            width = max(map(len, seqs))
            if limit and width > limit:
                raise ValueError(f"prompt + label is {width} tokens, past the model's context of {limit}")
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, seq in enumerate(seqs):
                ids[row, :len(seq)] = torch.tensor(seq)
                mask[row, :len(seq)] = 1
            with torch.inference_mode():
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)  # (B, T-1, V): position t predicts token t+1
            token_logp = logp.gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1).cpu()  # (B, T-1)
            for row, i in enumerate(batch):
                prompt_len, answer_len = len(pairs[i][0]), len(pairs[i][1])
                out[i] = float(token_logp[row, prompt_len - 1:prompt_len - 1 + answer_len].sum())
        return out

    # 3) what the label checks ask
    def class_probs(self, examples: Sequence[Any], field: str, classes: Sequence[str]) -> np.ndarray:
        """(N, K) probabilities of each class for `field`, normalised over the label set; other outputs as given."""
        inputs, outputs = [], []
        for ex in examples:
            inp, given = self.split(ex)
            for label in classes:
                inputs.append(inp)
                outputs.append({**given, field: label})
        scores = self.logprobs(inputs, outputs).reshape(len(examples), len(classes))
        scores -= scores.max(axis=1, keepdims=True)
        probs = np.exp(scores)
        return probs / probs.sum(axis=1, keepdims=True)

    def answers(self, examples: Sequence[Any], field: str) -> list[str | None]:
        """The program's own answer for `field` on each example (greedy, via the engine; None when unparsable)."""
        import dspy

        inputs = [self.split(ex)[0] for ex in examples]
        rows = [dspy.Example(**inp).with_inputs(*inp) for inp in inputs]
        with dspy.context(lm=self.lm):
            preds, _, errors = self.predictor.batch(rows, num_threads=8, max_errors=len(rows) + 1,
                                                    return_failed_examples=True, disable_progress_bar=True)
        if errors and len(errors) == len(rows):
            raise RuntimeError(f"the program failed on every example, e.g. {errors[0]!r}") from errors[0]
        return [None if p is None or getattr(p, field, None) is None else str(getattr(p, field)) for p in preds]

    def split(self, example: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the signature's inputs, the given outputs) of one example."""
        inputs = {name: example[name] for name in self.signature.input_fields}
        given = {name: example[name] for name in self.signature.output_fields if name in example}
        return inputs, given
