"""Least privilege on a real nats-server run with the shipped logins (deploy/nats/users.conf).

For each role every forbidden act is refused, and seen three ways: the caller gets a typed
error at once (``permission_denied``, not a timeout) or an exception, the component counts and
logs it, and the server logs the violation for that user.  The act has no effect (the store
still holds what it held).  The allowed acts of each role work under the same files.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from accounts_support import Accounts, accounts_server
from nats.js.api import RePublish, StreamConfig
from nats.js.errors import KeyNotFoundError
from typer.testing import CliRunner

from hieramas.bus import Bus, BusError
from hieramas.cli import app
from hieramas.controller.client import HieraClient
from hieramas.controller.store import CONFIG_BUCKET, ConfigStore
from hieramas.learner.store import POLICY_BLOBS, POLICY_BUCKET, PolicyStore
from hieramas.natsconn import NatsSettings
from hieramas.stack import Stack
from hieramas.traces import TRACE_STREAM
from hieramas.wire import Envelope, Kind, Subjects
from support import config_yaml, node

S = Subjects()
CONFIG = "test"


@pytest.fixture
def accounts(tmp_path: Path) -> Iterator[Accounts]:
    with accounts_server(tmp_path / "nats") as running:
        yield running


@pytest.fixture
def runtime(accounts: Accounts, llm_url: str) -> Iterator[tuple[Stack, Stack]]:
    """A controller and a worker, each with its own login, and config version 1."""
    with (
        Stack(nats_url=accounts.url, workers=0, settings=accounts.login("controller")) as control,
        Stack(nats_url=accounts.url, controller=False, settings=accounts.login("worker")) as work,
    ):
        assert control.bus is not None
        cfg = config_yaml(llm_url, {"a": node("Critic", ["fixed:A", "fixed:B"], "fixed:A")})
        assert control.bus.call(HieraClient(control.bus).apply_config(cfg), 30) == 1
        yield control, work


def connect(accounts: Accounts, role: str) -> Bus:
    return Bus(accounts.login(role), sender=f"test-{role}").start()


def wait_until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout}s: {what}")
        time.sleep(0.02)


def server_logged(accounts: Accounts, role: str, kind: str, subject: str) -> None:
    """The server logged a ``kind`` ("Publish" or "Subscription") violation by ``role``."""
    line = f'"$G/user:{role}" - {kind} Violation - Subject "{subject}"'
    wait_until(lambda: line in accounts.server_log(), line)


def envelope() -> Envelope:
    return Envelope(kind=Kind.QUERY, payload={"text": "forged"}, query_id="q-forged")


def refused_request(accounts: Accounts, bus: Bus, role: str, subject: str) -> None:
    """A request on ``subject`` fails with ``permission_denied`` (not by its 30 s timeout),
    the component counted it and the server logged it."""
    before = bus.counters["permission_denied"]
    with pytest.raises(BusError) as info:
        bus.call(bus.arequest(subject, envelope(), 30), 35)
    assert info.value.code == "permission_denied", info.value
    assert f"NATS user {role!r} may not publish to {subject}" in str(info.value)
    assert bus.counters["permission_denied"] > before
    server_logged(accounts, role, "Publish", subject)


def refused_publish(accounts: Accounts, bus: Bus, role: str, subject: str) -> None:
    before = bus.counters["permission_denied"]
    bus.publish(subject, envelope())
    wait_until(lambda: bus.counters["permission_denied"] > before, f"{role} refused {subject}")
    server_logged(accounts, role, "Publish", subject)


def refused_subscription(accounts: Accounts, bus: Bus, role: str, subject: str) -> None:
    before = bus.counters["permission_denied"]
    bus.subscribe(subject, lambda envelope, reply: None)
    wait_until(lambda: bus.counters["permission_denied"] > before, f"{role} may not read {subject}")
    server_logged(accounts, role, "Subscription", subject)


def refused_js(accounts: Accounts, bus: Bus, role: str, subject: str, act: Any) -> None:
    """A JetStream act (a coroutine function of a JetStream context) fails at once with
    ``permission_denied`` (not by its 30 s timeout); the server logged the refused API or
    store subject for ``role``."""
    js = bus.nc.jetstream(timeout=30.0)

    async def attempt() -> None:
        await act(js)

    with pytest.raises(BusError) as info:
        bus.call(attempt(), 35)
    assert info.value.code == "permission_denied"
    assert f"NATS user {role!r} may not publish to {subject}" in str(info.value)
    server_logged(accounts, role, "Publish", subject)


def kv_put(bucket: str, key: str, value: bytes) -> Any:
    async def act(js: Any) -> None:
        kv = await js.key_value(bucket)
        await kv.put(key, value)

    return act


def raw_js_publish(subject: str) -> Any:
    async def act(js: Any) -> None:
        await js.publish(subject, b"forged")

    return act


def stream_op(op: str, stream: str) -> Any:
    async def act(js: Any) -> None:
        await getattr(js, op)(stream)

    return act


def current_config(bus: Bus) -> int:
    async def read() -> int:
        return (await (await ConfigStore(bus).bind()).get()).version

    return bus.call(read(), 10)


def config_keys(bus: Bus) -> set[str]:
    async def read() -> set[str]:
        kv = await bus.js.key_value(CONFIG_BUCKET)
        return set(await kv.keys())

    return bus.call(read(), 10)


def publish_policy(bus: Bus) -> int:
    async def publish() -> int:
        store = await PolicyStore(bus).open()
        record = await store.publish(lambda version: (b"policy-blob", {"lineage": "t"}))
        return record.version

    return bus.call(publish(), 20)


def current_policy(bus: Bus) -> int:
    async def read() -> int:
        return await (await PolicyStore(bus).open()).current_version()

    return bus.call(read(), 10)


# ---------------------------------------------------------------- who may log in


def test_anonymous_and_wrong_logins_are_refused(accounts: Accounts) -> None:
    with pytest.raises(BusError, match=r"(?i)authorization violation"):
        Bus(NatsSettings(url=accounts.url, connect_timeout_s=1)).start(timeout=3)
    with pytest.raises(BusError):  # a worker login with the client's password
        Bus(accounts.login("worker", password=accounts.passwords["client"])).start(timeout=3)
    bus = connect(accounts, "client")
    try:
        assert bus.nc.is_connected
        assert bus.nc._inbox_prefix.decode() == "_INBOX.client"  # its replies are its own
    finally:
        bus.stop()
    assert "authentication error" in accounts.server_log()


# ---------------------------------------------------------------- clients


def test_a_client_may_only_ask_the_gateway(
    accounts: Accounts, runtime: tuple[Stack, Stack]
) -> None:
    control, work = runtime
    assert control.controller is not None
    worker_id = work.workers[0].worker_id
    gateway = control.controller.gateway.inbox
    bus = connect(accounts, "client")
    try:
        result = bus.call(HieraClient(bus).ask("Which option?", timeout_s=20), 30)
        assert result["status"] == "ok" and result["answer"] == "A"

        for subject in (
            S.activate("a"), S.propose("a", 0), S.synthesize("a"), S.activate("decision"),
            S.activate("a", "gpu"), S.instance(worker_id), gateway, S.worker_hello,
            S.trace("llm_call"), S.config("apply"), S.config("get"),
            f"$KV.{CONFIG_BUCKET}.current", f"$JS.API.STREAM.INFO.{TRACE_STREAM}",
        ):  # fmt: skip
            refused_request(accounts, bus, "client", subject)
        for subject in (S.trace_wildcard, S.all_activations(), "_INBOX.worker.>", S.query):
            refused_subscription(accounts, bus, "client", subject)
        refused_js(
            accounts, bus, "client", f"$JS.API.STREAM.INFO.{TRACE_STREAM}",
            lambda js: js.stream_info(TRACE_STREAM),
        )  # fmt: skip
        # and it still works after all that
        again = bus.call(HieraClient(bus).ask("Which option?", timeout_s=20), 30)
        assert again["status"] == "ok"
    finally:
        bus.stop()
    assert current_config(control.bus) == 1  # type: ignore[arg-type]


# ---------------------------------------------------------------- workers


def test_a_worker_reads_configs_but_cannot_write_configs_or_policies(
    accounts: Accounts, runtime: tuple[Stack, Stack]
) -> None:
    control, _ = runtime
    assert control.bus is not None
    learner = connect(accounts, "learner")
    bus = connect(accounts, "worker")
    try:
        assert publish_policy(learner) == 1
        assert current_config(bus) == 1  # reading is allowed (get, via the KV's stream)
        keys = config_keys(control.bus)

        for key in ("current", "v.9", "runtime.emulator_url"):
            refused_js(
                accounts, bus, "worker", f"$KV.{CONFIG_BUCKET}.{key}",
                kv_put(CONFIG_BUCKET, key, b"9"),
            )  # fmt: skip
        for subject in (f"$KV.{POLICY_BUCKET}.current", f"$O.{POLICY_BLOBS}.C.forged"):
            refused_js(accounts, bus, "worker", subject, raw_js_publish(subject))
        refused_js(
            accounts, bus, "worker", f"$JS.API.STREAM.INFO.KV_{POLICY_BUCKET}",
            lambda js: js.key_value(POLICY_BUCKET),
        )  # fmt: skip
        for op, stream in (
            ("delete_stream", f"KV_{CONFIG_BUCKET}"), ("purge_stream", f"KV_{CONFIG_BUCKET}"),
            ("delete_stream", TRACE_STREAM),
        ):  # fmt: skip
            api = "DELETE" if op == "delete_stream" else "PURGE"
            refused_js(
                accounts, bus, "worker", f"$JS.API.STREAM.{api}.{stream}", stream_op(op, stream)
            )
        refused_request(accounts, bus, "worker", S.config("apply"))
        refused_subscription(accounts, bus, "worker", S.query)
        refused_subscription(accounts, bus, "worker", "_INBOX.controller.>")
    finally:
        bus.stop()
    assert current_config(control.bus) == 1
    assert config_keys(control.bus) == keys
    assert current_policy(learner) == 1
    learner.stop()


# ---------------------------------------------------------------- learner and controller


def test_the_learner_writes_policies_but_not_configs(
    accounts: Accounts, runtime: tuple[Stack, Stack]
) -> None:
    control, _ = runtime
    assert control.bus is not None
    bus = connect(accounts, "learner")
    try:
        assert publish_policy(bus) == 1 and publish_policy(bus) == 2
        assert current_config(bus) == 1  # it reads configs
        for key in ("current", "v.2"):
            refused_js(
                accounts, bus, "learner", f"$KV.{CONFIG_BUCKET}.{key}",
                kv_put(CONFIG_BUCKET, key, b"2"),
            )  # fmt: skip
        refused_js(
            accounts, bus, "learner", f"$JS.API.STREAM.DELETE.{TRACE_STREAM}",
            stream_op("delete_stream", TRACE_STREAM),
        )  # fmt: skip
        for subject in (S.propose("a", 0), S.query, S.config("apply")):
            refused_request(accounts, bus, "learner", subject)
        refused_publish(accounts, bus, "learner", S.trace("llm_call"))  # it cannot forge traces
        refused_subscription(accounts, bus, "learner", S.all_proposers())
    finally:
        bus.stop()
    assert current_config(control.bus) == 1


def test_the_controller_writes_configs_but_not_policies(
    accounts: Accounts, runtime: tuple[Stack, Stack]
) -> None:
    control, _ = runtime
    bus = control.bus
    assert bus is not None
    learner = connect(accounts, "learner")
    try:
        assert publish_policy(learner) == 1
        assert current_policy(bus) == 1  # it reads policies (a learned planner does)
        for subject in (f"$KV.{POLICY_BUCKET}.current", f"$O.{POLICY_BLOBS}.C.forged"):
            refused_js(accounts, bus, "controller", subject, raw_js_publish(subject))
        refused_js(
            accounts, bus, "controller", f"$KV.{POLICY_BUCKET}.meta.9",
            kv_put(POLICY_BUCKET, "meta.9", b"{}"),
        )  # fmt: skip
        for op, api in (("delete_stream", "DELETE"), ("purge_stream", "PURGE")):
            stream = f"KV_{POLICY_BUCKET}"
            refused_js(
                accounts, bus, "controller", f"$JS.API.STREAM.{api}.{stream}", stream_op(op, stream)
            )
        assert current_policy(learner) == 1

        async def no_meta_9() -> bool:
            kv = await learner.js.key_value(POLICY_BUCKET)
            try:
                await kv.get("meta.9")
            except KeyNotFoundError:
                return True
            return False

        assert learner.call(no_meta_9(), 10)
    finally:
        learner.stop()


def test_the_learner_login_runs_the_trace_and_policy_commands(
    accounts: Accounts, runtime: tuple[Stack, Stack], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hieramas feedback`, `traces tail` and `policy list|rollback` need only the learner's
    login; a client's login gets a clear error from them."""
    runner = CliRunner()
    learner = connect(accounts, "learner")
    try:
        assert publish_policy(learner) == 1 and publish_policy(learner) == 2
    finally:
        learner.stop()
    for name, value in accounts.env("learner").items():
        monkeypatch.setenv(name, value)
    url = ["--nats", accounts.url]
    scored = runner.invoke(app, ["feedback", "q-1", "--score", "1", *url])
    assert scored.exit_code == 0, scored.output
    tail = runner.invoke(app, ["traces", "tail", "--last", "5", *url])
    assert tail.exit_code == 0 and '"query_id":"q-1"' in tail.output.replace(" ", ""), tail.output
    listed = runner.invoke(app, ["policy", "list", "--json", *url])
    assert [r["version"] for r in json.loads(listed.output)] == [1, 2]
    assert runner.invoke(app, ["policy", "rollback", "1", *url]).exit_code == 0

    monkeypatch.setenv("HIERAMAS_NATS_USER", "client")
    monkeypatch.setenv("HIERAMAS_NATS_PASSWORD", accounts.passwords["client"])
    assert runner.invoke(app, ["feedback", "q-1", "--score", "0", *url]).exit_code == 1
    asked = runner.invoke(app, ["config", "show", *url])
    assert asked.exit_code == 1 and "permission_denied" in asked.output, asked.output
    server_logged(accounts, "client", "Publish", S.config("get"))


def test_refused_jetstream_requests_fail_alone_and_a_cancel_stays_a_cancel(
    accounts: Accounts, runtime: tuple[Stack, Stack]
) -> None:
    """Two writes refused at once both fail with ``permission_denied``; a read made at the
    same time is answered; a request its caller cancels ends in ``CancelledError``."""
    bus = connect(accounts, "worker")
    js = bus.nc.jetstream(timeout=30.0)

    async def put() -> None:
        await (await js.key_value(CONFIG_BUCKET)).put("current", b"9")

    async def get() -> bytes:
        return (await (await js.key_value(CONFIG_BUCKET)).get("current")).value or b""

    async def scenario() -> tuple[list[Any], bool]:
        results = await asyncio.gather(put(), put(), get(), return_exceptions=True)
        await bus.nc.subscribe(S.instance("sink"))  # takes requests, never answers
        waiting = asyncio.ensure_future(bus.nc.request(S.instance("sink"), b"", timeout=30))
        await asyncio.sleep(0.1)
        waiting.cancel()
        try:
            await waiting
        except asyncio.CancelledError:
            return results, True
        return results, False

    try:
        results, cancelled = bus.call(scenario(), 20)
    finally:
        bus.stop()
    assert [getattr(r, "code", r) for r in results] == [
        "permission_denied", "permission_denied", b"1"
    ]  # fmt: skip
    assert cancelled


def test_no_login_can_make_the_server_write_for_it(
    accounts: Accounts, runtime: tuple[Stack, Stack]
) -> None:
    """A stream's config can republish what it stores into any subject, past the publish
    rules: a stream on ``hm.evil.>`` republished to ``$KV.hieramas_policies.>`` wrote the
    policy in force when the controller had ``$JS.API.>``.  No login may create another
    stream, or update any."""
    control, _ = runtime
    assert control.bus is not None
    learner = connect(accounts, "learner")
    try:
        assert publish_policy(learner) == 1
        evil = StreamConfig(
            name="EVIL", subjects=["hm.evil.>"],
            republish=RePublish(src="hm.evil.>", dest=f"$KV.{POLICY_BUCKET}.>"),
        )  # fmt: skip
        refused_js(
            accounts, control.bus, "controller", "$JS.API.STREAM.CREATE.EVIL",
            lambda js: js.add_stream(evil),
        )  # fmt: skip
        for stream, bus, role, dest in (
            (f"KV_{CONFIG_BUCKET}", control.bus, "controller", f"$KV.{POLICY_BUCKET}.>"),
            (TRACE_STREAM, control.bus, "controller", f"$KV.{POLICY_BUCKET}.>"),
            (f"KV_{POLICY_BUCKET}", learner, "learner", f"$KV.{CONFIG_BUCKET}.>"),
            (TRACE_STREAM, learner, "learner", f"$KV.{CONFIG_BUCKET}.>"),
        ):

            async def republish(js: Any, stream: str = stream, dest: str = dest) -> None:
                config = (await js.stream_info(stream)).config
                source = config.subjects[0]
                config.republish = RePublish(src=source, dest=dest)
                await js.update_stream(config)

            refused_js(accounts, bus, role, f"$JS.API.STREAM.UPDATE.{stream}", republish)
        assert current_policy(learner) == 1 and current_config(learner) == 1
    finally:
        learner.stop()


# ---------------------------------------------------------------- trace exporter


def test_the_exporter_login_exports_traces_and_nothing_else(
    accounts: Accounts, runtime: tuple[Stack, Stack]
) -> None:
    """`hieramas traces export` needs only its durable consumer on the trace stream (with
    --reset, deleting it); it cannot ask queries, forge traces or touch streams."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from hieramas.otelexport import TraceExporter

    client = connect(accounts, "client")
    try:
        result = client.call(HieraClient(client).ask("Which option?", timeout_s=20), 30)
        assert result["status"] == "ok", result
    finally:
        client.stop()
    bus = connect(accounts, "exporter")
    try:
        spans = InMemorySpanExporter()
        exporter = TraceExporter(bus, spans, reset=True)

        async def run() -> None:
            await exporter.open()
            try:
                await exporter.run(lambda: False, idle_exit_s=2)
            finally:
                await exporter.close()

        for _ in range(2):  # the second time --reset deletes the consumer and replays
            bus.call(run(), 60)
        traces = {s.context.trace_id for s in spans.get_finished_spans()}
        assert int(result["trace_id"], 16) in traces
        assert bus.counters["permission_denied"] == 0
        refused_request(accounts, bus, "exporter", S.query)
        refused_publish(accounts, bus, "exporter", S.trace("llm_call"))
        refused_js(
            accounts, bus, "exporter", f"$JS.API.STREAM.DELETE.{TRACE_STREAM}",
            stream_op("delete_stream", TRACE_STREAM),
        )  # fmt: skip
        refused_subscription(accounts, bus, "exporter", S.all_proposers())
    finally:
        bus.stop()
