"""OpenAI chat-completions wire format: request payloads and response parsing.

Pure functions, no I/O.  Parsing is lenient where servers differ (missing or
null ``usage``, extra fields, content as a list of parts, an ``error`` object
inside a 200 body as OpenRouter sometimes sends) and strict where the answer
would be meaningless (no JSON, no ``choices``, no message).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Annotated, Any

import msgspec

from hieramas.llm.types import ChatRequest, LLMError

__all__ = [
    "Completion",
    "EmbeddedError",
    "StreamAccumulator",
    "build_payload",
    "error_detail",
    "parse_completion",
    "parse_retry_after",
]

_MAX_DETAIL = 300


@dataclass(frozen=True, slots=True)
class Completion:
    """The useful part of a chat-completions response."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    served_model: str | None
    finish_reason: str | None


@dataclass(frozen=True, slots=True)
class EmbeddedError:
    """An ``{"error": ...}`` object returned with HTTP 200 (OpenRouter does this)."""

    code: int | None
    message: str


def build_payload(request: ChatRequest, *, stream: bool = False) -> dict[str, Any]:
    """The JSON body of ``POST /chat/completions`` for ``request``."""
    payload: dict[str, Any] = {
        "model": request.model.model_id,
        "messages": request.messages,
        "temperature": request.temperature,
    }
    if request.max_tokens is not None:
        payload["max_tokens"] = request.max_tokens
    if request.seed is not None:
        payload["seed"] = request.seed
    if stream:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    return payload


def _token_count(usage: object, key: str) -> int | None:
    if not isinstance(usage, dict):
        return None
    value = usage.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return int(value)


def _content_text(content: object) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return "".join(p for p in parts if isinstance(p, str))
    raise LLMError("malformed", f"message content has unexpected type {type(content).__name__}")


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _Message
    finish_reason: str | None = None


_Count = Annotated[int, msgspec.Meta(ge=0)]


class _Usage(msgspec.Struct):
    prompt_tokens: _Count | None = None
    completion_tokens: _Count | None = None


class _Plain(msgspec.Struct):
    """The completion every OpenAI-compatible server sends when all is well."""

    choices: Annotated[list[_Choice], msgspec.Meta(min_length=1)]
    usage: _Usage | None = None
    model: str | None = None


_plain_decoder = msgspec.json.Decoder(_Plain)


def parse_completion(raw: bytes) -> Completion | EmbeddedError:
    """Parse a 2xx response body; raise :class:`LLMError` ``malformed`` when unusable.

    A plain completion is decoded and checked against its schema in one pass, in C,
    skipping the fields nobody reads; anything else (content parts, an embedded
    error, odd usage, garbage) takes the lenient reading below.
    """
    try:
        plain = _plain_decoder.decode(raw)
    except msgspec.DecodeError:  # a ValidationError is a DecodeError too
        return _parse_lenient(raw)
    first = plain.choices[0]
    usage = plain.usage
    return Completion(
        text=first.message.content or "",
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        served_model=plain.model,
        finish_reason=first.finish_reason,
    )


def _parse_lenient(raw: bytes) -> Completion | EmbeddedError:
    try:
        body = msgspec.json.decode(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LLMError("malformed", f"response is not JSON: {_snippet(raw)!r}") from exc
    if not isinstance(body, dict):
        raise LLMError("malformed", f"response is a JSON {type(body).__name__}, not an object")
    choices = body.get("choices")
    if not choices and isinstance(body.get("error"), dict | str):
        return _embedded_error(body["error"])
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise LLMError("malformed", "response has no choices")
    first = choices[0]
    message = first.get("message")
    if not isinstance(message, dict):
        raise LLMError("malformed", "response choice has no message")
    usage = body.get("usage")
    model = body.get("model")
    finish = first.get("finish_reason")
    return Completion(
        text=_content_text(message.get("content")),
        prompt_tokens=_token_count(usage, "prompt_tokens"),
        completion_tokens=_token_count(usage, "completion_tokens"),
        served_model=model if isinstance(model, str) else None,
        finish_reason=finish if isinstance(finish, str) else None,
    )


class StreamAccumulator:
    """Builds a :class:`Completion` from server-sent ``chat.completion.chunk`` events.

    Feed it the response's lines; ``feed`` says whether a line carried answer text
    (the first such line is the true time to first token).
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._prompt_tokens: int | None = None
        self._completion_tokens: int | None = None
        self._model: str | None = None
        self._finish: str | None = None
        self._error: EmbeddedError | None = None
        self.done = False
        self.events = 0

    def feed(self, line: str) -> bool:
        """Consume one line of the event stream."""
        if not line.startswith("data:"):
            return False  # blank separators, comments (": ping"), event:/id: fields
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return False
        try:
            chunk = msgspec.json.decode(data)
        except ValueError as exc:
            raise LLMError(
                "malformed", f"stream event is not JSON: {data[:_MAX_DETAIL]!r}"
            ) from exc
        if not isinstance(chunk, dict):
            raise LLMError("malformed", "stream event is not a JSON object")
        self.events += 1
        if chunk.get("error") is not None and not chunk.get("choices"):
            self._error = _embedded_error(chunk["error"])
            return False
        if isinstance(chunk.get("model"), str):
            self._model = chunk["model"]
        usage = chunk.get("usage")
        if usage is not None:
            self._prompt_tokens = _token_count(usage, "prompt_tokens")
            self._completion_tokens = _token_count(usage, "completion_tokens")
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return False
        first = choices[0]
        if isinstance(first.get("finish_reason"), str):
            self._finish = first["finish_reason"]
        delta = first.get("delta")
        if not isinstance(delta, dict):
            return False
        text = _content_text(delta.get("content"))
        if text:
            self._parts.append(text)
            return True
        return False

    def finish(self) -> Completion | EmbeddedError:
        """The accumulated completion, once the stream ended."""
        if self._error is not None:
            return self._error
        if not self.done and self._finish is None:
            raise LLMError("malformed", "event stream ended before [DONE] or a finish_reason")
        if self.events == 0:
            raise LLMError("malformed", "event stream carried no chunks")
        return Completion(
            text="".join(self._parts),
            prompt_tokens=self._prompt_tokens,
            completion_tokens=self._completion_tokens,
            served_model=self._model,
            finish_reason=self._finish,
        )


def _embedded_error(error: object) -> EmbeddedError:
    if isinstance(error, str):
        return EmbeddedError(None, error[:_MAX_DETAIL])
    assert isinstance(error, dict)
    code = error.get("code")
    message = error.get("message")
    return EmbeddedError(
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        str(message)[:_MAX_DETAIL] if message is not None else "error without message",
    )


def error_detail(raw: bytes) -> str:
    """A short human-readable reason from an error response body."""
    try:
        body = msgspec.json.decode(raw)
    except (ValueError, UnicodeDecodeError):
        return _snippet(raw)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message") is not None:
            return str(error["message"])[:_MAX_DETAIL]
        if isinstance(error, str):
            return error[:_MAX_DETAIL]
        if body.get("detail") is not None:  # FastAPI-style servers (vLLM)
            return str(body["detail"])[:_MAX_DETAIL]
    return _snippet(raw)


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:  # "-0000" dates parse naive; HTTP dates are UTC
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now_epoch
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _snippet(raw: bytes) -> str:
    return raw[:_MAX_DETAIL].decode("utf-8", errors="replace")
