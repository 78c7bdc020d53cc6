"""Pure parsing helpers: Retry-After, response bodies, token estimates."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from hieramas.llm.tokens import estimate_prompt_tokens, estimate_tokens
from hieramas.llm.types import ChatRequest, LLMError, ModelSpec
from hieramas.llm.wire import (
    Completion,
    EmbeddedError,
    StreamAccumulator,
    build_payload,
    error_detail,
    parse_completion,
    parse_retry_after,
)
from hieramas.llm.wire import _parse_lenient as parse_leniently

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("-4", 0.0),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        (formatdate(NOW + 30, usegmt=True), 30.0),
        (formatdate(NOW - 30, usegmt=True), 0.0),
        (formatdate(NOW + 5).replace("+0000", "-0000"), 5.0),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected


def test_parse_completion_ok_and_usage_variants() -> None:
    raw = (
        b'{"model": "x", "choices": [{"message": {"content": "hi"}, "finish_reason": "length"}],'
        b' "usage": {"prompt_tokens": 5, "completion_tokens": 2.0}}'
    )
    assert parse_completion(raw) == Completion("hi", 5, 2, "x", "length")
    odd = b'{"choices": [{"message": {"content": null}}], "usage": {"prompt_tokens": -1, "completion_tokens": true}}'
    assert parse_completion(odd) == Completion("", None, None, None, None)
    assert parse_completion(b'{"choices": [{"message": {}}], "usage": "n/a"}') == Completion(
        "", None, None, None, None
    )


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-x",'
        b' "system_fingerprint": "fp", "choices": [{"index": 0, "logprobs": null,'
        b' "message": {"role": "assistant", "content": "A", "refusal": null},'
        b' "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 1,'
        b' "total_tokens": 10, "prompt_tokens_details": {"cached_tokens": 0}}}',
        b'{"choices": [{"message": {"content": "B"}}], "usage": null}',
        b'{"choices": [{"message": {"content": "C"}}], "usage": {"prompt_tokens": 1.5}}',
        b'{"choices": [{"message": {"content": [{"type": "text", "text": "D"}]}}]}',
        b'{"choices": [{"message": {"content": "E"}}], "model": 7, "finish_reason": 1}',
        b'{"choices": [], "error": {"message": "upstream", "code": 502}}',
    ],
)
def test_the_schema_fast_path_reads_as_the_lenient_one(raw: bytes) -> None:
    assert parse_completion(raw) == parse_leniently(raw)


def test_parse_completion_embedded_error_and_bad_content() -> None:
    assert parse_completion(b'{"error": {"message": "upstream", "code": 502}}') == EmbeddedError(
        502, "upstream"
    )
    assert parse_completion(b'{"error": "plain"}') == EmbeddedError(None, "plain")
    with pytest.raises(LLMError, match="unexpected type") as info:
        parse_completion(b'{"choices": [{"message": {"content": 3}}]}')
    assert info.value.kind == "malformed"
    with pytest.raises(LLMError, match="not JSON"):
        parse_completion(b"\xff\xfe")


def test_error_detail() -> None:
    assert error_detail(b'{"error": {"message": "bad key"}}') == "bad key"
    assert error_detail(b'{"error": "nope"}') == "nope"
    assert error_detail(b'{"detail": "vllm says"}') == "vllm says"
    assert error_detail(b"plain text") == "plain text"
    assert len(error_detail(b"x" * 5000)) == 300


def test_build_payload_omits_unset_fields() -> None:
    request = ChatRequest(ModelSpec("n", "id", "e"), [{"role": "user", "content": "q"}])
    assert build_payload(request) == {
        "model": "id",
        "messages": [{"role": "user", "content": "q"}],
        "temperature": 0.0,
    }
    streaming = build_payload(request, stream=True)
    assert streaming["stream"] is True and streaming["stream_options"] == {"include_usage": True}


def test_token_estimates_are_deterministic_and_plausible() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("Hello, world!") == 4  # Hello , world !
    assert estimate_tokens("internationalization") == 4  # 20 letters, 6 per piece
    assert estimate_tokens("x = 12345678") == 1 + 1 + 3
    assert estimate_tokens("snake_case") == 3
    assert estimate_tokens("東京 café") == 6  # non-ASCII letters: one per character
    text = "The quick brown fox jumps over the lazy dog. " * 20
    assert estimate_tokens(text) == estimate_tokens(text)
    assert estimate_tokens(text) == 200  # 9 words + '.', as GPT tokenizers count it
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    assert estimate_prompt_tokens(messages) == 3 + (4 + 3) + (4 + 4)


def test_stream_accumulator() -> None:
    acc = StreamAccumulator()
    lines = [
        ": comment",
        "",
        "event: message",
        'data: {"model": "m", "choices": [{"delta": {"role": "assistant", "content": ""}}]}',
        'data: {"choices": [{"delta": {"content": "a"}}]}',
        'data:{"choices": [{"delta": {"content": [{"type": "text", "text": "b"}]}}]}',
        'data: {"choices": [{"delta": {}, "finish_reason": "length"}]}',
        'data: {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}}',
        "data: [DONE]",
    ]
    assert [acc.feed(line) for line in lines] == [False] * 4 + [True, True] + [False] * 3
    assert acc.done
    assert acc.finish() == Completion("ab", 4, 2, "m", "length")
    empty = StreamAccumulator()
    empty.feed("data: [DONE]")
    with pytest.raises(LLMError, match="no chunks"):
        empty.finish()
    with pytest.raises(LLMError, match="not a JSON object"):
        StreamAccumulator().feed("data: [1]")
