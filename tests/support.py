"""Config builders for runtime tests (scripted models from :mod:`hieramas.llm.loopback`)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import yaml

from hieramas.controller.client import HieraClient
from hieramas.stack import Stack

MMLU_ROLES = [
    "Knowledgeable Expert", "Critic", "Mathematician", "Psychologist",
    "Historian", "Doctor", "Lawyer", "Economist",
]  # fmt: skip

SCRIPTED_LLMS = ["fixed:A", "fixed:B", "fixed:C", "fail", "slow:0.3", "slow:1", "slow:5", "echo"]


def config_yaml(
    llm_url: str,
    supernodes: dict[str, dict[str, Any]],
    edges: list[tuple[str, str]] = (),  # type: ignore[assignment]
    *,
    decision: str = "fixed:A",
    domain: str = "mmlu",
    name: str = "test",
    query_timeout_s: float = 30,
    extra_llms: list[str] = (),  # type: ignore[assignment]
) -> str:
    """A config whose LLMs are scripted models on the test server (priced so costs are visible)."""
    llms = {
        name_: {"endpoint": "scripted", "model": name_, "price_in": 1.0, "price_out": 2.0}
        for name_ in [*SCRIPTED_LLMS, *extra_llms]
    }
    return yaml.safe_dump(
        {
            "name": name,
            "domain": domain,
            "endpoints": {"scripted": {"base_url": llm_url, "max_retries": 0, "timeout_s": 20}},
            "llms": llms,
            "supernodes": supernodes,
            "edges": [list(e) for e in edges],
            "decision": decision,
            "limits": {"query_timeout_s": query_timeout_s, "node_timeout_s": query_timeout_s},
        },
        sort_keys=False,
    )


def node(role: str, proposers: list[str], synthesizer: str) -> dict[str, Any]:
    """One supernode entry."""
    return {"role": role, "proposers": proposers, "synthesizer": synthesizer}


def chat_post(base_url: str, model: str = "echo", *, stream: bool = False) -> httpx.Request:
    """A chat completion request as the client sends it (with an API key header)."""
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": "a b c"}]}
    if stream:
        body["stream"] = True
    return httpx.Request(
        "POST",
        f"{base_url}/chat/completions",
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-t"},
        content=json.dumps(body).encode(),
    )


def client_of(stack: Stack) -> HieraClient:
    """A client on the stack's own connection."""
    assert stack.bus is not None
    return HieraClient(stack.bus)


def apply_config(stack: Stack, yaml_text: str) -> int:
    """Apply ``yaml_text`` through the controller; its version."""
    assert stack.bus is not None
    version: int = stack.bus.call(client_of(stack).apply_config(yaml_text), 10)
    return version


def ask(stack: Stack, text: str = "Which option?", **kw: Any) -> dict[str, Any]:
    """One query through the gateway; its result."""
    assert stack.bus is not None
    result: dict[str, Any] = stack.bus.call(client_of(stack).ask(text, **kw), 60)
    return result
