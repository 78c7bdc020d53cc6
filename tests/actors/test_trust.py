"""Workers trust nothing on the wire: forged endpoints, wrong field types, forged bookkeeping.

Everything runs on a real nats-server with the real controller and worker; the "attacker"
is this test publishing on the subjects any NATS client could publish on.  The exfiltration
test also runs under the shipped per-component logins (deploy/nats/users.conf), where the
attacker holds a worker's login, the only one that may publish on node subjects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from accounts_support import accounts_server

from hieramas.bus import Bus, BusError, RemoteError
from hieramas.controller.config import parse_config
from hieramas.controller.planner import PlanRequest, StaticPlanner, build_plan
from hieramas.llm.loopback import LoopbackLLM
from hieramas.stack import Stack
from hieramas.wire import Envelope, Kind, Subjects
from support import apply_config, ask, client_of, config_yaml, node

SUBJECTS = Subjects()
NATS_SECRET = "nats-password-that-must-never-leave"
OPENAI_SECRET = "sk-openai-that-must-never-leave"
ALLOWED_KEY = "sk-allowed-key"


@pytest.fixture(params=["one_user", "per_component_users"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Stack, Stack]]:
    """(the controller's stack, the attacker's stack with the worker): one stack on an open
    server, or a controller and a worker each with its own login from deploy/nats/users.conf.
    With the logins, a client's login cannot even send the forged call."""
    if request.param == "one_user":
        with Stack(nats_url=request.getfixturevalue("nats_server").url) as running:
            yield running, running
        return
    with accounts_server(tmp_path / "nats") as accounts:
        client = Bus(accounts.login("client")).start()
        try:
            with pytest.raises(BusError) as refused:
                client.call(client.arequest(SUBJECTS.propose("expert", 0), _slot_call({}), 5), 10)
            assert refused.value.code == "permission_denied"
        finally:
            client.stop()
        with (
            Stack(nats_url=accounts.url, workers=0, settings=accounts.login("controller")) as ctl,
            Stack(nats_url=accounts.url, controller=False, settings=accounts.login("worker")) as w,
        ):
            yield ctl, w


@pytest.fixture
def listener() -> Iterator[LoopbackLLM]:
    """The attacker's endpoint: an OpenAI-compatible server that records every request."""
    with LoopbackLLM(record=True) as server:
        yield server


def _request(stack: Stack, subject: str, envelope: Envelope) -> Envelope:
    assert stack.bus is not None
    reply: Envelope = stack.bus.call(stack.bus.arequest(subject, envelope, 5), 10)
    return reply


def _refused(stack: Stack, subject: str, envelope: Envelope) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        _request(stack, subject, envelope)
    return info.value


def _call(llm: str | None = None, **fields: Any) -> dict[str, Any]:
    """A proposer call for node ``expert`` of the test config, as a forger writes it."""
    call: dict[str, Any] = {
        "kind": "propose", "node": "expert", "role": "Critic", "domain": "mmlu",
        "task": "Which option?", "deadline_unix": time.time() + 20,
    }  # fmt: skip
    if llm is not None:
        call["llm"] = llm
    return {**call, **fields}


def _slot_call(call: dict[str, Any], *, version: int = 1, slot: str = "p0@1") -> Envelope:
    return Envelope(
        kind=Kind.SLOT_CALL,
        payload={"slot": slot, "call": call},
        query_id="forged",
        config_version=version,
    )


def _keyed_config(llm_url: str, listener_url: str, key_variable: str) -> str:
    """The test config plus LLM ``remote`` on ``listener_url`` with key ``key_variable``."""
    text = config_yaml(llm_url, {"expert": node("Critic", ["remote"], "fixed:A")})
    data = parse_yaml(text)
    data["endpoints"]["remote"] = {
        "base_url": listener_url, "api_key_env": key_variable, "max_retries": 0,
    }  # fmt: skip
    data["llms"]["remote"] = {"endpoint": "remote", "model": "fixed:A"}
    return dump_yaml(data)


def parse_yaml(text: str) -> dict[str, Any]:
    import yaml

    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def dump_yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def _authorizations(listener: LoopbackLLM) -> list[str]:
    return [r.headers.get("authorization", "") for r in listener.requests]


def test_a_forged_call_cannot_send_a_secret_to_its_own_url(
    deployment: tuple[Stack, Stack],
    llm_url: str,
    listener: LoopbackLLM,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The exfiltration of issue 17: a call naming the forger's URL and the NATS password's
    variable.  The forger gets a typed error each time; its listener gets nothing."""
    stack, attacker = deployment
    monkeypatch.setenv("HIERAMAS_NATS_PASSWORD", NATS_SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_SECRET)
    assert stack.bus is not None and stack.controller is not None and attacker.bus is not None
    counters = attacker.bus.counters  # the worker's
    assert (
        apply_config(
            stack, config_yaml(llm_url, {"expert": node("Critic", ["fixed:A"], "fixed:A")})
        )
        == 1
    )
    evil = {
        "model": {"name": "evil", "model_id": "fixed:X", "endpoint": "evil"},
        "endpoint": {"name": "evil", "base_url": listener.base_url,
                     "api_key_env": "HIERAMAS_NATS_PASSWORD"},
    }  # fmt: skip
    subject = SUBJECTS.propose("expert", 0)

    # the old wire format (URL and key variable in the call): a typed error, nothing sent
    assert _refused(attacker, subject, _slot_call(_call(**evil))).code == "payload"
    # an LLM the config version does not have, or a version the store does not have
    assert _refused(attacker, subject, _slot_call(_call("evil", **evil))).code == "unknown_llm"
    assert _refused(attacker, subject, _slot_call(_call("fixed:A"), version=99)).code == (
        "unknown_config"
    )
    # a real LLM with the forger's endpoint record riding along: the record is ignored and
    # the call goes to the endpoint the stored config names
    served = _request(attacker, subject, _slot_call(_call("fixed:A", **evil)))
    assert served.kind is Kind.SLOT_RESULT and served.payload["status"] == "ok"
    assert served.payload["call"]["endpoint"] == "scripted"

    # a config whose endpoint is the listener with a variable outside HIERAMAS_KEY_*:
    # the worker refuses to read it, and the query says why
    assert apply_config(stack, _keyed_config(llm_url, listener.base_url, "OPENAI_API_KEY")) == 2
    result = ask(stack)
    assert result["config_version"] == 2 and result["answer"] == "A"  # the synthesizer answers
    p0 = result["nodes"]["expert"]["calls"]["p0"]
    assert p0["outcome"] == "error" and "key_not_allowed" in p0["error"]
    assert "OPENAI_API_KEY" in p0["error"] and OPENAI_SECRET not in str(result)
    assert _refused(attacker, subject, _slot_call(_call("remote"), version=2)).code == (
        "key_not_allowed"
    )

    # naming the NATS password's variable is refused by config apply...
    nats_keyed = _keyed_config(llm_url, listener.base_url, "HIERAMAS_NATS_PASSWORD")
    with pytest.raises(RemoteError) as info:
        apply_config(stack, nats_keyed)
    assert info.value.code == "invalid_config" and "NATS credential" in info.value.detail
    # ...and a version written straight into the store with it does not validate when a
    # worker reads it (were it read, the key policy refuses NATS variables: test_trusted.py)
    record = {"yaml": nats_keyed, "applied_at": time.time(), "source": "forger"}
    store = stack.controller.store
    stack.bus.call(store.kv.create("v.50", msgspec.msgpack.encode(record)), 10)
    refused = _refused(attacker, subject, _slot_call(_call("remote"), version=50))
    assert refused.code == "unknown_config" and "NATS credential" in refused.detail

    assert listener.requests == []  # the forger's endpoint never heard from the worker
    assert counters["endpoint.refused"] >= 3
    assert counters["actor.crashed"] == 0


def test_a_key_variable_the_worker_allows_is_sent_and_only_it(
    nats_server: Any, llm_url: str, listener: LoopbackLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The positive control: the listener does record what it is sent."""
    monkeypatch.setenv("HIERAMAS_NATS_PASSWORD", NATS_SECRET)
    monkeypatch.setenv("HIERAMAS_KEY_TRUST_TEST", ALLOWED_KEY)
    monkeypatch.setenv("TEAM_LLM_KEY", "sk-team")
    with Stack(nats_url=nats_server.url, key_env=["TEAM_LLM_KEY"]) as stack:
        apply_config(stack, _keyed_config(llm_url, listener.base_url, "HIERAMAS_KEY_TRUST_TEST"))
        assert ask(stack)["nodes"]["expert"]["calls"]["p0"]["outcome"] == "ok"
        apply_config(stack, _keyed_config(llm_url, listener.base_url, "TEAM_LLM_KEY"))
        assert ask(stack)["nodes"]["expert"]["calls"]["p0"]["outcome"] == "ok"
    assert _authorizations(listener) == [f"Bearer {ALLOWED_KEY}", "Bearer sk-team"]


def _valid_plan(llm_url: str) -> dict[str, Any]:
    config = parse_config(config_yaml(llm_url, {"expert": node("Critic", ["slow:1"], "fixed:A")}))
    assignment = StaticPlanner().assign(config, PlanRequest("q"))
    return build_plan(config, 1, assignment, query_id="forged", task_text="q").to_wire()


def _wrong_typed(llm_url: str) -> list[tuple[str, Kind, dict[str, Any], str]]:
    """(subject, kind, payload, expected code): right kinds, wrong field types."""
    plan = _valid_plan(llm_url)
    activation = {"plan": plan, "node": "expert", "nodes": ["expert"], "gateway": "hm.gwi.x"}
    call = _call("slow:1")
    synth = {**call, "kind": "synthesize", "llm": "fixed:A", "proposals": ["a"]}
    output = {"node": "expert", "status": "ok", "text": "A"}
    propose, synthesize = SUBJECTS.propose("expert", 0), SUBJECTS.synthesize("expert")
    activate = SUBJECTS.activate("expert")
    return [
        (activate, Kind.NODE_ACTIVATE, {**activation, "plan": {"nodes": "not a map"}}, "bad_plan"),
        (activate, Kind.NODE_ACTIVATE, {**activation, "plan": [1, 2]}, "bad_plan"),
        (activate, Kind.NODE_ACTIVATE, {**activation, "node": 5}, "payload"),
        (activate, Kind.NODE_ACTIVATE, {**activation, "nodes": "expert"}, "payload"),
        (activate, Kind.NODE_ACTIVATE, {**activation, "gateway": "$KV.hieramas_configs.current"}, "bad_plan"),
        (activate, Kind.NODE_ACTIVATE, {**activation, "plan": {**plan, "nodes": {"a.b": {}}}}, "bad_plan"),
        (SUBJECTS.activate("decision"), Kind.NODE_ACTIVATE, {**activation, "plan": "x"}, "bad_plan"),
        (propose, Kind.SLOT_CALL, {"slot": "p0@1", "call": "not a map"}, "payload"),
        (propose, Kind.SLOT_CALL, {"slot": 7, "call": call}, "payload"),
        (propose, Kind.SLOT_CALL, {"slot": "p0@1", "call": {**call, "model": "x", "endpoint": 3, "llm": {"a": 1}}}, "payload"),
        (propose, Kind.SLOT_CALL, {"slot": "p0@1", "call": {**call, "predecessors": "x"}}, "payload"),
        (propose, Kind.SLOT_CALL, {"slot": "p0@1", "call": {**call, "deadline_unix": "soon"}}, "payload"),
        (propose, Kind.SLOT_CALL, {"slot": "p0@1", "call": {**call, "notify": "hm.>"}}, "payload"),
        (propose, Kind.SLOT_CALL, {"slot": "p0@1", "call": {**call, "role": "Nobody"}}, "bad_call"),
        (propose, Kind.SLOT_CALL, {"slot": "p9@1", "call": call}, "unknown_slot"),
        (synthesize, Kind.SLOT_CALL, {"slot": "synth@1", "call": {**synth, "proposals": [1, 2]}}, "payload"),
        (synthesize, Kind.SLOT_CALL, {"slot": "p0@1", "call": synth}, "bad_call"),
        ("worker-inbox", Kind.NODE_INPUT, {"node": "expert", "output": "not a map"}, "payload"),
        ("worker-inbox", Kind.NODE_INPUT, {"node": "expert", "output": {**output, "status": 5}}, "payload"),
        ("worker-inbox", Kind.NODE_ROUTES, {"node": "expert", "routes": "not a map"}, "payload"),
        ("worker-inbox", Kind.NODE_ROUTES, {"node": "expert", "routes": {"expert": 5}}, "payload"),
        ("worker-inbox", Kind.NODE_ROUTES, {"node": "expert", "routes": {"expert": "hm.gwi.evil"}}, "payload"),
        ("worker-inbox", Kind.SLOT_ACCEPTED, {"node": "expert", "slot": "p0@1", "worker": ["w"]}, "payload"),
        ("gateway-inbox", Kind.NODE_OUTPUT, {"output": "not a map"}, "payload"),
        ("gateway-inbox", Kind.NODE_OUTPUT, {"output": {**output, "cost_usd": "lots"}}, "payload"),
        (SUBJECTS.worker_hello, Kind.WORKER_HELLO, {"worker": {"a": 1}, "nodes": []}, "payload"),
    ]  # fmt: skip


def _where(stack: Stack, subject: str) -> str:
    if subject == "worker-inbox":
        return stack.workers[0].ctx.inbox
    if subject == "gateway-inbox":
        assert stack.controller is not None
        return stack.controller.gateway.inbox
    return subject


def test_wrong_typed_fields_on_every_subject_get_typed_errors_while_queries_go_on(
    stack: Stack, llm_url: str
) -> None:
    """Right-kind messages with wrong field types (the crashes of issue 17) while queries
    are in flight: each gets its typed error, no actor dies, every query completes."""
    apply_config(
        stack,
        config_yaml(
            llm_url, {"expert": node("Critic", ["slow:1"], "fixed:A")}, extra_llms=["slow:1"]
        ),
    )
    assert stack.bus is not None
    bus, client, cases = stack.bus, client_of(stack), _wrong_typed(llm_url)

    async def scenario() -> tuple[list[dict[str, Any]], list[str]]:
        queries = [asyncio.ensure_future(client.ask(f"q{i}")) for i in range(6)]
        await asyncio.sleep(0.2)  # every query is inside its slow proposer call now
        codes = []
        for subject, kind, payload, _ in cases:
            envelope = Envelope(kind=kind, payload=payload, query_id="forged", config_version=1)
            try:
                await bus.arequest(_where(stack, subject), envelope, 5)
                codes.append("answered")
            except RemoteError as exc:
                codes.append(exc.code)
        return list(await asyncio.gather(*queries)), codes

    results, codes = bus.call(scenario(), 60)
    assert codes == [code for *_, code in cases]
    assert [(r["status"], r["answer"]) for r in results] == [("ok", "A")] * 6
    assert bus.counters["actor.crashed"] == 0
    assert bus.counters["rejected.internal"] == 0
    assert ask(stack)["status"] == "ok"


def test_forged_bookkeeping_is_rejected_and_counted(stack: Stack, llm_url: str) -> None:
    """A node output for a node outside the plan, an input from a non-predecessor and a
    slot.accepted naming a worker nobody hears from change nothing."""
    apply_config(
        stack,
        config_yaml(
            llm_url,
            {"expert": node("Critic", ["slow:1"], "fixed:A"), "doctor": node("Doctor", ["fixed:A"], "fixed:A")},
            [("expert", "doctor")],
            extra_llms=["slow:1"],
        ),
    )  # fmt: skip
    assert stack.bus is not None and stack.controller is not None
    bus, client, gateway, worker = (
        stack.bus,
        client_of(stack),
        stack.controller.gateway,
        stack.workers[0],
    )

    async def scenario() -> dict[str, Any]:
        query = asyncio.ensure_future(client.ask("q"))
        await asyncio.sleep(0.4)  # inside the slow proposer, past its 0.25 s announcement
        (query_id,) = gateway.runs
        ghost = {"node": "ghost", "status": "ok", "text": "Z", "answer": "Z"}
        forged = [
            (gateway.inbox, Kind.NODE_OUTPUT, {"output": ghost}),
            (worker.ctx.inbox, Kind.NODE_INPUT, {"node": "doctor", "output": ghost}),
            (worker.ctx.inbox, Kind.SLOT_ACCEPTED, {"node": "expert", "slot": "p0@1", "worker": "w-fake"}),
            (worker.ctx.inbox, Kind.SLOT_ACCEPTED, {"node": "nope", "slot": "p3@1", "worker": "w-fake2"}),
        ]  # fmt: skip
        for subject, kind, payload in forged:
            envelope = Envelope(kind=kind, payload=payload, query_id=query_id, config_version=1)
            await bus.apublish(subject, envelope)
        await bus.nc.flush()
        return await query  # type: ignore[no-any-return]

    result = bus.call(scenario(), 60)
    assert result["status"] == "ok" and result["answer"] == "A"
    assert set(result["nodes"]) == {"expert", "doctor"}  # the ghost is not a node of it
    counters = bus.counters
    assert counters["gateway.foreign_output"] == 1
    assert counters["rejected.unknown_node"] == 1
    assert counters["rejected.not_a_predecessor"] == 1
    assert counters["slot.accepted_unknown_worker"] == 2
    assert counters["slot.redone"] == 0  # the real taker's call was not disturbed
    for liveness in (worker.liveness, stack.controller.liveness):
        assert not {"w-fake", "w-fake2"} & set(liveness.last_seen)  # never tracked, never "lost"
    assert counters["workers.lost"] == 0
