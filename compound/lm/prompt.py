"""How a DSPy request becomes the model's prompt text."""

from __future__ import annotations


def render_prompt(tokenizer, system: str | None, messages: list[dict]) -> str:
    """The exact text the engine feeds the model for `system` + chat `messages`.

    With a chat template: `apply_chat_template([system?, *messages], add_generation_prompt=True)`; a template that
    refuses a system role gets the system text merged into the first user turn. Without a template (base models): a
    plain `System:/User:/Assistant:` transcript ending with `Assistant:`.

    Example:
        >>> from compound.testing import tiny_tokenizer
        >>> render_prompt(tiny_tokenizer(), "Be brief.", [{"role": "user", "content": "Hi"}])
        '<|system|>\\nBe brief.<|end|>\\n<|user|>\\nHi<|end|>\\n<|assistant|>\\n'
    """
    if getattr(tokenizer, "chat_template", None):
        convo = ([{"role": "system", "content": system}] if system else []) + list(messages)
        try:
            return tokenizer.apply_chat_template(convo, add_generation_prompt=True, tokenize=False)
        except Exception:  # e.g. "System role not supported": fold it into the first user turn
            if not system:
                raise
            merged = [dict(m) for m in messages]
            first_user = next((m for m in merged if m["role"] == "user"), None)
            if first_user is None:
                merged.insert(0, first_user := {"role": "user", "content": ""})
            first_user["content"] = f"{system}\n\n{first_user['content']}"
            return tokenizer.apply_chat_template(merged, add_generation_prompt=True, tokenize=False)
    parts = [f"System: {system}"] if system else []
    parts += [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(parts) + "\n\nAssistant:"


def prompt_ids(tokenizer, text: str) -> list[int]:
    """Token ids of a rendered prompt; a chat template already wrote the special tokens it wants."""
    add_special = not getattr(tokenizer, "chat_template", None)
    # verbose=False: no "Token indices sequence length" warning; the engine checks the length and says what to do
    return tokenizer(text, add_special_tokens=add_special, verbose=False)["input_ids"]
