"""The gateway's inbox is served in process for a worker on the same connection (``hieramas
up``), and still over NATS for a worker anywhere else (issue 18)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hieramas.bus import Bus
from hieramas.natsconn import NatsSettings
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from hieramas.wire import Envelope, Kind
from support import apply_config, ask, config_yaml, node

NODES = {
    "expert": node("Critic", ["fixed:A", "fixed:B"], "fixed:A"),
    "doctor": node("Doctor", ["fixed:A"], "fixed:A"),
}


@pytest.fixture
def spy(nats_server: NatsServer) -> Iterator[Bus]:
    """Another connection to the same server, to see what crosses NATS."""
    bus = Bus(NatsSettings.from_env(name="spy").with_url(nats_server.url), sender="spy").start()
    yield bus
    bus.stop()


def _outputs_seen_on_nats(spy: Bus, subject: str) -> list[str]:
    """Start recording the node outputs published to ``subject`` over NATS."""
    seen: list[str] = []

    def tap(envelope: Envelope, reply: str | None) -> None:
        if envelope.kind is Kind.NODE_OUTPUT:
            seen.append(str(envelope.payload["output"]["node"]))

    spy.subscribe(subject, tap)
    return seen


def _caught_up(spy: Bus) -> None:
    """Wait until the spy has taken every message the server routed to it so far: a message
    the gateway got before the answer was queued to the spy before this PONG."""
    spy.call(spy.nc.flush(timeout=5), 10)


def test_node_outputs_reach_a_gateway_in_the_same_process_without_nats(
    stack: Stack, spy: Bus, llm_url: str
) -> None:
    assert stack.controller is not None and stack.bus is not None
    apply_config(stack, config_yaml(llm_url, NODES, [("expert", "doctor")]))
    seen = _outputs_seen_on_nats(spy, stack.controller.gateway.inbox)
    replies: list[str] = []  # what crossed NATS to a requester's inbox
    spy.subscribe("_INBOX.>", lambda envelope, _: replies.append(envelope.kind.value))
    counters = stack.bus.counters
    keys = ("local.delivered", "local.handed_over", "local.slot_calls")
    before = {key: counters[key] for key in keys}
    result = ask(stack)
    assert result["status"] == "ok" and result["answer"] == "A", result
    assert set(result["nodes"]) == {"expert", "doctor"}
    _caught_up(spy)
    assert seen == []  # nothing of it crossed NATS
    assert "query.result" not in replies  # the client shares the stack's connection
    # handed over in process, not encoded: the expert, doctor and decision outputs to the
    # gateway and the expert's and the doctor's outputs to their successors; and the
    # supernodes' slot calls made in process
    assert {key: counters[key] - before[key] for key in keys} == {
        "local.delivered": 0,
        "local.handed_over": 5,
        "local.slot_calls": 5,
    }


def test_a_worker_elsewhere_still_sends_its_outputs_over_nats(
    nats_server: NatsServer, spy: Bus, llm_url: str
) -> None:
    with (
        Stack(nats_url=nats_server.url, workers=0) as controller,
        Stack(nats_url=nats_server.url, controller=False) as workers,
    ):
        assert controller.controller is not None and workers.bus is not None
        apply_config(controller, config_yaml(llm_url, NODES, [("expert", "doctor")]))
        seen = _outputs_seen_on_nats(spy, controller.controller.gateway.inbox)
        result = ask(controller)
        assert result["status"] == "ok" and result["answer"] == "A", result
        assert set(result["nodes"]) == {"expert", "doctor"}
        _caught_up(spy)
        assert sorted(seen) == ["decision", "doctor", "expert"]
        assert workers.bus.counters["local.slot_calls"] > 0  # its own slot calls stay local
