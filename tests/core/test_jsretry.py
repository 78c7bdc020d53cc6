"""Opening buckets and the trace stream through JetStream faults (issue 17 follow-ups).

Transient faults are retried for a bounded time; a refused login fails at once, on a real
nats-server with the shipped per-component logins (deploy/nats/users.conf); an existing trace
stream is kept, never updated, by logins that may not update streams.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats.errors
import pytest
from accounts_support import Accounts, accounts_server
from nats.js.errors import (
    BadRequestError,
    BucketNotFoundError,
    KeyNotFoundError,
    NotFoundError,
    ServiceUnavailableError,
)

from hieramas.bus import Bus, BusError
from hieramas.controller.store import ConfigStore
from hieramas.jsretry import is_transient, retry_transient
from hieramas.learner.store import PolicyStore
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer
from hieramas.traces import TRACE_STREAM, ensure_trace_stream
from hieramas.wire import Subjects

S = Subjects()


@pytest.fixture
def accounts(tmp_path: Path) -> Iterator[Accounts]:
    with accounts_server(tmp_path / "nats") as running:
        yield running


def connect(accounts: Accounts, role: str) -> Bus:
    return Bus(accounts.login(role), sender=f"test-{role}").start()


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (nats.errors.TimeoutError(), True),
        (nats.errors.NoRespondersError(), True),
        (ServiceUnavailableError(code=503, err_code=10008), True),
        (BadRequestError(code=400, err_code=10005), True),  # no peers yet: a fresh cluster
        (BusError("timeout", "no reply"), True),
        (BusError("no_responders", "nobody"), True),
        (BusError("permission_denied", "refused"), False),
        (BusError("closed", "closed"), False),
        (BadRequestError(code=400, err_code=10058), False),  # the name is taken
        (BucketNotFoundError(), False),
        (KeyNotFoundError(), False),
        (NotFoundError(code=404, err_code=10059), False),
        (ValueError("bad config"), False),
    ],
)
def test_what_counts_as_transient(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_transient_faults_are_retried_and_counted_and_others_fail_at_once(
    nats_server: NatsServer,
) -> None:
    bus = Bus(NatsSettings(url=nats_server.url)).start()
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ServiceUnavailableError(code=503, err_code=10008)
        return "ok"

    async def broken() -> str:
        calls.append(1)
        raise BadRequestError(code=400, err_code=10058)

    async def hopeless() -> str:
        calls.append(1)
        raise nats.errors.TimeoutError

    try:
        assert bus.call(retry_transient(flaky, bus=bus, what="flaky"), 10) == "ok"
        assert len(calls) == 3 and bus.counters["jetstream.retried"] == 2
        calls.clear()
        with pytest.raises(BadRequestError):
            bus.call(retry_transient(broken, bus=bus, what="broken"), 10)
        assert len(calls) == 1
        calls.clear()
        with pytest.raises(nats.errors.TimeoutError):  # bounded: the last error comes out
            bus.call(retry_transient(hopeless, bus=bus, what="hopeless", within_s=0.3), 10)
        assert 2 <= len(calls) < 10
    finally:
        bus.stop()


def test_a_refused_login_fails_to_open_a_store_at_once(accounts: Accounts) -> None:
    """The worker may read the config bucket but not create it, and may not even look at the
    policy bucket: both refusals come out as ``permission_denied``, without a retry."""
    bus = connect(accounts, "worker")
    try:
        with pytest.raises(BusError) as config_refused:
            bus.call(ConfigStore(bus).open(), 30)
        with pytest.raises(BusError) as policy_refused:
            bus.call(PolicyStore(bus).open(), 30)
    finally:
        bus.stop()
    assert config_refused.value.code == "permission_denied"
    assert policy_refused.value.code == "permission_denied"
    assert bus.counters["jetstream.retried"] == 0


def test_stores_open_when_another_process_made_them_and_retry_a_timeout(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The controller opens the config bucket the controller made before; a timeout on the
    first look (a fresh R3 bucket electing its leader) is retried, not fatal."""
    first = connect(accounts, "controller")
    bus = connect(accounts, "controller")
    try:
        first.call(ConfigStore(first).open(), 30)
        first.call(PolicyStore(first).open(), 30)
        real = bus.js.key_value
        timeouts = [nats.errors.TimeoutError()]

        async def key_value(bucket: str) -> Any:
            if timeouts:
                raise timeouts.pop()
            return await real(bucket)

        monkeypatch.setattr(bus.js, "key_value", key_value)
        store = bus.call(ConfigStore(bus).open(), 30)
        policies = bus.call(PolicyStore(bus).open(), 30)
    finally:
        bus.stop()
        first.stop()
    assert store.bound and store.current_version == 0
    assert policies.kv is not None
    assert bus.counters["jetstream.retried"] == 1
    assert bus.counters["permission_denied"] == 0


def test_an_existing_trace_stream_is_kept_not_updated(accounts: Accounts) -> None:
    """The controller made the stream; the learner asks for other settings: its update is
    refused (no login may update streams) and the stream stays as it was, no error."""
    controller = connect(accounts, "controller")
    learner = connect(accounts, "learner")
    try:
        controller.call(ensure_trace_stream(controller, S), 30)
        learner.call(ensure_trace_stream(learner, S), 30)  # the same settings: nothing to do
        assert learner.counters["permission_denied"] == 0
        learner.call(ensure_trace_stream(learner, S, max_age_s=60.0), 30)
        info = learner.call(learner.js.stream_info(TRACE_STREAM), 10)
    finally:
        learner.stop()
        controller.stop()
    assert info.config.max_age == 7 * 86400  # kept as the controller made it
    assert learner.counters["permission_denied"] == 1  # the one refused update
    assert learner.counters["jetstream.retried"] == 0


def test_a_timeout_while_creating_the_trace_stream_is_retried_not_updated(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transient fault on create is retried as a create: the refused update that used to
    follow it made the learner exit."""
    learner = connect(accounts, "learner")
    real = learner.js.add_stream
    faults = [nats.errors.TimeoutError(), ServiceUnavailableError(code=503, err_code=10008)]

    async def add_stream(config: Any = None, **params: Any) -> Any:
        if faults:
            raise faults.pop()
        return await real(config, **params)

    async def update_stream(config: Any = None, **params: Any) -> Any:
        raise AssertionError("an update after a transient fault")

    monkeypatch.setattr(learner.js, "add_stream", add_stream)
    monkeypatch.setattr(learner.js, "update_stream", update_stream)
    try:
        learner.call(ensure_trace_stream(learner, S), 30)
        info = learner.call(learner.js.stream_info(TRACE_STREAM), 10)
    finally:
        learner.stop()
    assert info.config.name == TRACE_STREAM
    assert learner.counters["jetstream.retried"] == 2
