"""The controller's config API: every request gets a reply, whatever the store holds."""

from __future__ import annotations

import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import msgspec
import pytest

from hieramas.bus import Bus, RemoteError
from hieramas.controller.client import HieraClient
from hieramas.controller.service import Controller
from hieramas.controller.store import CONFIG_BUCKET, ConfigStore
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from support import config_yaml, node

T = TypeVar("T")
URL = "http://127.0.0.1:9/v1"
PROMPT_S = 3.0  # far below the client's 15 s timeout: an answer, not a lost request


@pytest.fixture
def stack(nats_server: NatsServer) -> Iterator[Stack]:
    with Stack(nats_url=nats_server.url, workers=0) as running:
        yield running


@pytest.fixture
def bare(nats_server: NatsServer) -> Iterator[Stack]:
    """A stack whose controller the test starts itself (as ``stack.controller``: the stack
    stops it)."""
    with Stack(nats_url=nats_server.url, workers=0, controller=False) as running:
        yield running


def _bus(stack: Stack) -> Bus:
    assert stack.bus is not None
    return stack.bus


def _controller(stack: Stack) -> Controller:
    assert stack.controller is not None
    return stack.controller


def _call(stack: Stack, coro: Coroutine[Any, Any, T]) -> T:
    return _bus(stack).call(coro, 20)


def _config(name: str) -> str:
    text: str = config_yaml(URL, {"a": node("Critic", ["fixed:A"], "fixed:A")}, name=name)
    return text


def _apply_elsewhere(stack: Stack, *names: str) -> None:
    """Apply versions through a store of its own, as another controller would."""

    async def apply() -> None:
        store = await ConfigStore(_bus(stack)).open()
        for name in names:
            await store.apply(_config(name))

    _call(stack, apply())


def _corrupt(stack: Stack, key: str, value: bytes) -> None:
    async def put() -> None:
        kv = await _bus(stack).js.key_value(CONFIG_BUCKET)
        await kv.put(key, value)

    _call(stack, put())


def _record(**fields: Any) -> bytes:
    return msgspec.msgpack.encode(fields)


CORRUPT_RECORDS = {
    "garbled": b"\xc1\xc1\xc1",
    "not_a_map": msgspec.msgpack.encode([1, 2, 3]),
    "no_yaml": _record(applied_at=1.0, source="user"),
    "yaml_not_text": _record(yaml=5, applied_at=1.0),
    "invalid_yaml": _record(yaml="a: [unclosed", applied_at=1.0),
}


@pytest.mark.parametrize("record", list(CORRUPT_RECORDS.values()), ids=list(CORRUPT_RECORDS))
def test_a_corrupt_stored_version_gets_a_prompt_error_and_the_controller_keeps_serving(
    bare: Stack, record: bytes
) -> None:
    stack = bare
    client = HieraClient(_bus(stack))
    _apply_elsewhere(stack, "one", "two")
    _corrupt(stack, "v.1", record)
    stack.controller = Controller(_bus(stack)).start()  # it has not read version 1 yet

    started = time.monotonic()
    with pytest.raises(RemoteError) as info:
        _call(stack, client.get_config(1))
    assert time.monotonic() - started < PROMPT_S
    assert info.value.code == "corrupt_config"
    assert "config version 1 is corrupt in the store" in info.value.detail
    assert _bus(stack).counters["config.failed.corrupt_config"] == 1

    started = time.monotonic()
    rows = _call(stack, client.history())  # the other versions are still listed
    assert time.monotonic() - started < PROMPT_S
    assert [(r["version"], r["name"]) for r in rows] == [(1, "(unreadable)"), (2, "two")]
    assert "corrupt" in rows[0]["error"] and "error" not in rows[1]

    started = time.monotonic()
    result = _call(stack, client.ask("q?", config_version=1, timeout_s=2))
    assert time.monotonic() - started < PROMPT_S
    assert result["status"] == "corrupt_config"
    assert "config version 1 is corrupt" in result["error"]

    assert _call(stack, client.get_config())["version"] == 2  # still serving
    assert _call(stack, client.apply_config(_config("three"))) == 3


def test_an_unexpected_failure_in_apply_gets_an_internal_error(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = HieraClient(_bus(stack))
    store = _controller(stack).store

    async def broken(yaml_text: str, *, source: str = "user") -> Any:
        raise RuntimeError("could not apply the config: too many concurrent writers")

    monkeypatch.setattr(store, "apply", broken)
    started = time.monotonic()
    with pytest.raises(RemoteError) as info:
        _call(stack, client.apply_config(_config("one")))
    assert time.monotonic() - started < PROMPT_S
    assert info.value.code == "internal"
    assert "too many concurrent writers" in info.value.detail
    assert _bus(stack).counters["config.failed.internal"] == 1

    monkeypatch.undo()
    assert _call(stack, client.apply_config(_config("one"))) == 1


@pytest.mark.parametrize(
    ("version", "code"), [("seven", "bad_request"), (99, "not_found")], ids=["bad", "missing"]
)
def test_a_bad_or_missing_version_is_refused_clearly(
    stack: Stack, version: object, code: str
) -> None:
    client = HieraClient(_bus(stack))
    assert _call(stack, client.apply_config(_config("one"))) == 1
    with pytest.raises(RemoteError) as info:
        _call(stack, client._config("get", {"version": version}))
    assert info.value.code == code
    assert _bus(stack).counters[f"config.failed.{code}"] == 1
    assert _call(stack, client.get_config())["version"] == 1
