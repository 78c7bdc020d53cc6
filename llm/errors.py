"""Client-side refinements of :class:`~hieramas.llm.types.LLMError`.

Both are ``LLMError`` subclasses, so callers that catch ``LLMError`` and look at
``kind`` need nothing else.
"""

from __future__ import annotations

from hieramas.llm.types import LLMError, LLMErrorKind

__all__ = ["AttemptError", "ReplayMissError"]


class AttemptError(LLMError):
    """One failed HTTP attempt, with what the retry policy and breaker need to know."""

    def __init__(
        self,
        kind: LLMErrorKind,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        endpoint_fault: bool = False,
    ) -> None:
        super().__init__(kind, message, status=status)
        self.retryable = retryable
        self.retry_after = retry_after
        self.endpoint_fault = endpoint_fault


class ReplayMissError(LLMError):
    """A replay-only cache has no recording of this request (kind ``connection``:
    in replay mode the network is off limits, so a miss is "cannot reach the model")."""

    def __init__(self, message: str) -> None:
        super().__init__("connection", message)
