"""What a request can get back instead of a result, and why. Plain Python: nothing here imports DSPy or torch.

Requests fail alone: a bad request is refused at `submit` (`InvalidRequestError`, `ContextLengthError`), a fault in
one request's own work fails only that request (`RequestFailedError`), and an aborted or cancelled request ends with
`RequestAbortedError`. Only a fault of the whole model stops the engine (`EngineDeadError` for everyone waiting).
`compound.LM` turns these into the DSPy errors users catch (see `compound.lm.dspy_lm`).
"""

from __future__ import annotations


class EngineError(RuntimeError):
    """Base of the errors the engine hands to a waiting caller."""


class EngineDeadError(EngineError):
    """The engine stopped on a fault of the whole model; every pending request fails with it (the cause attached)."""


class EngineClosedError(EngineError):
    """The engine was closed; pending and new requests fail with this."""


class RequestAbortedError(EngineError):
    """The request was aborted (`engine.abort(id)`, a cancelled future, a timeout) before it finished."""


class RequestFailedError(EngineError):
    """This request's own work failed at `stage`; the engine and every other request carried on.

    Stages: "admission", "prefill", "decode" (the request failed the batched forward pass even alone), "sampling"
    (including non-finite logits), "detokenize" (detokenizing or stop-string matching), "oom" (it does not fit
    in memory even alone).
    """

    def __init__(self, message: str, *, stage: str, request_id: int):
        super().__init__(message)
        self.stage, self.request_id = stage, request_id


class InvalidRequestError(ValueError):
    """The request was refused at submit: an empty prompt, a token id outside the vocabulary, bad sampling values."""


class ContextLengthError(InvalidRequestError):
    """The prompt does not fit the engine's context (`EngineConfig.max_seq_len`)."""

    def __init__(self, message: str, *, prompt_tokens: int, max_seq_len: int):
        super().__init__(message)
        self.prompt_tokens, self.max_seq_len = prompt_tokens, max_seq_len


class UnsupportedArchitectureError(ValueError):
    """The engine cannot reproduce this model's attention exactly, so it refuses to serve it."""
