"""LLM layer: the OpenAI-compatible chat client, accounting, caching, and real local models.

Names are imported lazily, so ``import hieramas.llm.types`` (or ``.local``)
does not pay for httpx/tenacity.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hieramas.llm.breaker import CircuitBreaker
    from hieramas.llm.cache import CacheMode, ResponseCache, cache_key
    from hieramas.llm.client import OpenAIChatClient, RetryPolicy
    from hieramas.llm.errors import ReplayMissError
    from hieramas.llm.tokens import estimate_prompt_tokens, estimate_tokens
    from hieramas.llm.types import (
        ChatClient,
        ChatRequest,
        ChatResult,
        EndpointSpec,
        LLMError,
        LLMErrorKind,
        Message,
        ModelSpec,
    )

__all__ = [
    "CacheMode",
    "ChatClient",
    "ChatRequest",
    "ChatResult",
    "CircuitBreaker",
    "EndpointSpec",
    "LLMError",
    "LLMErrorKind",
    "Message",
    "ModelSpec",
    "OpenAIChatClient",
    "ReplayMissError",
    "ResponseCache",
    "RetryPolicy",
    "cache_key",
    "estimate_prompt_tokens",
    "estimate_tokens",
]

_WHERE = {
    "CircuitBreaker": "breaker",
    "CacheMode": "cache",
    "ResponseCache": "cache",
    "cache_key": "cache",
    "OpenAIChatClient": "client",
    "RetryPolicy": "client",
    "ReplayMissError": "errors",
    "estimate_prompt_tokens": "tokens",
    "estimate_tokens": "tokens",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name, "types" if name in __all__ else None)
    if module is None:
        raise AttributeError(f"module 'hieramas.llm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hieramas.llm.{module}"), name)
    globals()[name] = value
    return value
