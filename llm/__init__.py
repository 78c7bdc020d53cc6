"""LLM layer: the OpenAI-compatible chat client, accounting, caching, and real local models."""

from __future__ import annotations

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
