"""Stage 2's counting cache: what a repeated call would have cost is counted as saved."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import respx

from hieramas.learner.dagrun import CountingCache
from hieramas.llm.client import OpenAIChatClient
from hieramas.llm.types import ChatRequest, EndpointSpec

Body = Callable[..., dict[str, Any]]


async def test_a_repeated_call_is_served_and_counted_as_saved(
    tmp_path: Path,
    chat_request: ChatRequest,
    chat_endpoint: EndpointSpec,
    chat_body: Body,
    chat_url: str,
) -> None:
    cache = CountingCache(tmp_path / "c.sqlite")
    usage = {"prompt_tokens": 1000, "completion_tokens": 400}
    async with OpenAIChatClient(cache=cache) as client:
        with respx.mock:
            route = respx.post(chat_url).respond(200, json=chat_body("recorded", usage))
            first = await client.chat(chat_request, chat_endpoint)
            again = [await client.chat(chat_request, chat_endpoint) for _ in range(2)]
    assert route.call_count == 1 and all(r.cached for r in again)
    assert first.cost_usd > 0
    stats = cache.stats()
    assert stats["calls_paid"] == 1 and stats["calls_reused"] == 2
    assert stats["usd_paid"] == first.cost_usd
    assert abs(stats["usd_saved"] - 2 * first.cost_usd) < 1e-12
    cache.close()
