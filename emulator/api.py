"""The OpenAI chat-completions wire format: request validation and response bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "FINGERPRINT",
    "ApiError",
    "ChatCompletionRequest",
    "ChatMessage",
    "Choice",
    "chunk_body",
    "completion_body",
    "error_body",
    "parse_request",
]

FINGERPRINT = "hieramas-emulator"
"""``system_fingerprint`` of every emulated reply."""


class ApiError(Exception):
    """A request the server refuses; rendered as an OpenAI-style JSON error."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code


class ChatMessage(BaseModel):
    """One message; ``content`` may be a string or a list of text parts."""

    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1)
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text (text parts joined; other parts ignored)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(
            str(part.get("text", "")) for part in self.content if part.get("type") == "text"
        )


class ChatCompletionRequest(BaseModel):
    """The fields of ``POST /v1/chat/completions`` the emulator uses (others are accepted)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=16)
    seed: int | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)

    @field_validator("messages")
    @classmethod
    def _has_text(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.text().strip() for m in messages):
            raise ValueError("all messages are empty")
        return messages

    def token_limit(self) -> int | None:
        """The completion-token limit, whichever field set it."""
        return self.max_completion_tokens or self.max_tokens


def parse_request(body: bytes) -> ChatCompletionRequest:
    """Validate a request body; raises :class:`ApiError` (400) with the first problem."""
    try:
        return ChatCompletionRequest.model_validate_json(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err.get("loc", ()))
        if err.get("type") == "json_invalid":
            raise ApiError(400, f"request body is not valid JSON: {err.get('msg')}") from None
        raise ApiError(
            400, f"invalid request: {loc or 'body'}: {err.get('msg')}", param=loc or None
        ) from None


class Choice(BaseModel):
    """One generated reply."""

    text: str
    finish_reason: Literal["stop", "length"]
    completion_tokens: int


def completion_body(
    *,
    completion_id: str,
    created: int,
    model: str,
    choices: list[Choice],
    prompt_tokens: int,
    cost_usd: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """A ``chat.completion`` object with ``usage`` and the ``emulated`` label."""
    completion_tokens = sum(c.completion_tokens for c in choices)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": c.text},
                "logprobs": None,
                "finish_reason": c.finish_reason,
            }
            for i, c in enumerate(choices)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "cost": cost_usd,
        },
        "emulated": True,
        "emulator": extra,
    }


def chunk_body(
    *,
    completion_id: str,
    created: int,
    model: str,
    index: int,
    delta: dict[str, str],
    finish_reason: str | None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` of a streamed reply."""
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        ]
        if usage is None
        else [],
        "emulated": True,
    }
    if usage is not None:
        body["usage"] = usage
    return body


def error_body(err: ApiError) -> dict[str, Any]:
    """The OpenAI error envelope for ``err``."""
    return {
        "error": {
            "message": err.message,
            "type": err.kind,
            "param": err.param,
            "code": err.code,
        },
        "emulated": True,
    }
