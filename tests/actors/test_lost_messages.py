"""A node message lost on the way (as in a nats-server restart) is sent again, and one that
comes twice is taken once: the query ends in seconds, not at its deadline."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest

from hieramas.actors.messages import Arm, Inbound
from hieramas.actors.worker import Worker
from hieramas.bus import Bus
from hieramas.controller.gateway import STALL_S, Gateway
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from hieramas.wire import Envelope, Kind
from hieramas.wire.messages import NodeInput
from support import apply_config, ask, config_yaml, node

DEADLINE_S = 30.0


def _chain(llm_url: str, doctor_synth: str = "fixed:A") -> str:
    return config_yaml(
        llm_url,
        {
            "expert": node("Critic", ["fixed:A"], "fixed:A"),
            "doctor": node("Doctor", ["slow:0.3"], doctor_synth),
        },
        [("expert", "doctor")],
        query_timeout_s=DEADLINE_S,
        extra_llms=["slow:0.3"],
    )


def _drop_first(monkeypatch: pytest.MonkeyPatch, cls: type, method: str, lost: Any) -> list[Any]:
    """Make ``cls.method`` drop the first message ``lost(message)`` picks; the dropped go in
    the list returned.  Patched before the stack starts: subscriptions bind the method then."""
    original = getattr(cls, method)
    dropped: list[Any] = []

    def dropping(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not dropped and lost(*args):
            dropped.append(args)
            return None
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, dropping)
    return dropped


def _is_input_to_doctor(message: Inbound) -> bool:
    """A node input for the doctor, as the worker hands it to its nodes (whether it came
    over NATS or from a node of the same worker, in process)."""
    return isinstance(message.body, NodeInput) and "doctor" in message.body.nodes


def _is_decision_output(envelope: Envelope, reply: str | None, node: str, output: Any) -> bool:
    """The decision's output as the gateway takes it (whether it came over NATS or was
    handed over by a worker of the same process)."""
    return node == "decision"


def _is_doctors_arming(key: Any, message: Any, **_: Any) -> bool:
    return isinstance(message, Arm) and key == ("supernode", "doctor", "")


@pytest.mark.parametrize(
    ("where", "method", "lost", "counter"),
    [
        # the expert's output to the doctor (and the decision node): the gateway has it,
        # and sends it again when the doctor says it waits for it
        (Worker, "_to_nodes", _is_input_to_doctor, "gateway.input_resent"),
        # the decision's output to the gateway: the decision node sends it again
        (Gateway, "_on_output", _is_decision_output, "node.output_resent"),
        # the doctor's worker answered the activation but its node never got the arming:
        # it holds nothing of the query, so the gateway arms it again
        (Worker, "_tell", _is_doctors_arming, "gateway.probe_rearmed"),
    ],
    ids=["node-input", "decision-output", "arming"],
)
def test_a_lost_node_message_is_sent_again(
    monkeypatch: pytest.MonkeyPatch,
    nats_server: NatsServer,
    llm_url: str,
    where: type,
    method: str,
    lost: Any,
    counter: str,
) -> None:
    dropped = _drop_first(monkeypatch, where, method, lost)
    with Stack(nats_url=nats_server.url) as stack:
        assert stack.bus is not None
        apply_config(stack, _chain(llm_url))
        started = time.monotonic()
        result = ask(stack, timeout_s=DEADLINE_S)
        waited = time.monotonic() - started
        counters = stack.bus.counters
        assert dropped  # the message was lost
        assert result["status"] == "ok", result
        assert result["answer"] == "A"
        assert counters[counter] >= 1
        assert counters["gateway.probes"] >= 1
        assert waited < 3 * STALL_S + 2  # noticed within a probe round or two, not at 30 s
        assert ask(stack, timeout_s=DEADLINE_S)["status"] == "ok"  # and nothing is left stuck


def test_a_node_input_that_comes_twice_is_taken_once(stack: Stack, llm_url: str) -> None:
    """Send the doctor a second copy of the expert's output, with another text, while it
    runs: it keeps the first (its synthesizer, which echoes its prompt, never sees the
    second), and counts the duplicate."""
    apply_config(stack, _chain(llm_url, doctor_synth="echo"))
    assert stack.bus is not None
    bus = stack.bus
    worker = stack.workers[0]
    inbox = worker.ctx.inbox
    copies: list[Envelope] = []

    to_nodes = worker._to_nodes

    def tap(message: Inbound) -> None:
        to_nodes(message)  # the expert's output, handed over in process
        if _is_input_to_doctor(message) and not copies:
            wire = msgspec.to_builtins(message.body)
            body = {**wire, "output": {**wire["output"], "text": "FORGED: the answer is Z"}}
            copy = message.envelope.reply(Kind.NODE_INPUT, body, sender=message.envelope.sender)
            copies.append(copy)
            bus.publish(inbox, copy)  # a second copy over the inbox, after the original

    async def with_tap() -> dict[str, Any]:
        worker._to_nodes = tap  # type: ignore[method-assign]
        try:
            from hieramas.controller.client import HieraClient

            return await HieraClient(bus).ask("Which option?", timeout_s=DEADLINE_S)
        finally:
            worker._to_nodes = to_nodes  # type: ignore[method-assign]

    result = bus.call(with_tap(), 60)
    assert copies
    assert result["status"] == "ok", result
    doctor = result["nodes"]["doctor"]
    assert doctor["status"] == "ok"
    assert '<output role="Critic">' in doctor["text"]  # the expert's output, as it came first
    assert "FORGED" not in doctor["text"]
    assert bus.counters["node.duplicate_input"] >= 1
    assert bus.counters["gateway.duplicate_output"] == 0


def test_a_node_output_that_comes_twice_counts_once(stack: Stack, llm_url: str) -> None:
    """Every node output the gateway gets is sent to it again at once: the result is the
    same as without, and each copy is counted once (a duplicate, or late after the answer)."""
    apply_config(stack, _chain(llm_url))
    assert stack.bus is not None and stack.controller is not None
    bus = stack.bus
    gateway = stack.controller.gateway
    gateway_inbox = gateway.inbox
    copies: list[Envelope] = []

    def tap(envelope: Envelope, reply: str | None) -> None:
        gateway._on_inbox(envelope, reply)  # the gateway's inbox is served in process
        node_ = envelope.payload["output"]["node"]
        if node_ != "decision" and node_ not in {c.payload["output"]["node"] for c in copies}:
            copies.append(envelope)  # once per node: the tap hears its own copies too
            bus.publish(gateway_inbox, envelope)

    async def with_tap() -> dict[str, Any]:
        bus.serve_locally(gateway_inbox, tap)
        try:
            from hieramas.controller.client import HieraClient

            return await HieraClient(bus).ask("Which option?", timeout_s=DEADLINE_S)
        finally:
            bus.serve_locally(gateway_inbox, gateway._on_inbox)

    result = bus.call(with_tap(), 60)
    assert len(copies) == 2  # the expert's and the doctor's
    assert result["status"] == "ok" and result["answer"] == "A"
    assert set(result["nodes"]) == {"expert", "doctor"}
    # Each copy is counted once: as a duplicate while its query runs, or as late once it is
    # answered (the decision can finish before the doctor's copy is handled).
    # A late copy may still be on its way when the answer is in: wait for it (CI under load).
    deadline = time.monotonic() + 15.0
    while _copies_counted(bus) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    counted = {k: v for k, v in bus.counters.items() if k.startswith("gateway.")}
    assert _copies_counted(bus) == 2, counted


def _copies_counted(bus: Bus) -> int:
    return int(bus.counters["gateway.duplicate_output"] + bus.counters["gateway.late_output"])
