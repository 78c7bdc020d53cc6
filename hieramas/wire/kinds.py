"""The closed set of message kinds, and the payload keys each one requires."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = ["INPUT_OUTPUT_KEYS", "REQUIRED_KEYS", "Kind", "input_output"]


class Kind(StrEnum):
    """What an envelope carries. Anything else is rejected on decode."""

    QUERY = "query"  # client -> gateway
    QUERY_RESULT = "query.result"  # gateway -> client
    NODE_ACTIVATE = "node.activate"  # gateway -> node (queue group), arms a node for a query
    NODE_ARMED = "node.armed"  # node -> gateway, the instance inbox that will run it
    # NODE_ROUTES and NODE_INPUT go to a worker inbox once for all the nodes it hosts
    # (optional ``nodes`` list; ``node`` is the first of them)
    NODE_ROUTES = "node.routes"  # gateway -> armed instance: where every node of the query runs
    NODE_INPUT = "node.input"  # node -> successor instance: a predecessor's output
    NODE_OUTPUT = "node.output"  # node -> gateway: one node's finished output
    NODE_PROBE = "node.probe"  # gateway -> worker inbox, a request: how is this stalled node?
    NODE_STATE = "node.state"  # node -> gateway, the probe's reply
    SLOT_CALL = "slot.call"  # supernode -> proposer / synthesizer slot
    SLOT_RESULT = "slot.result"  # slot -> supernode
    SLOT_ACCEPTED = "slot.accepted"  # slot -> supernode's worker inbox: which worker took a call
    CONFIG_APPLY = "config.apply"
    CONFIG_GET = "config.get"
    CONFIG_HISTORY = "config.history"
    CONFIG_REPLY = "config.reply"
    WORKER_HELLO = "worker.hello"
    TRACE = "trace"
    ERROR = "error"


REQUIRED_KEYS: dict[Kind, frozenset[str]] = {  # the records' required fields (test_messages.py)
    Kind.QUERY: frozenset({"text"}),
    Kind.QUERY_RESULT: frozenset({"status"}),
    Kind.NODE_ACTIVATE: frozenset({"plan", "node", "gateway"}),
    Kind.NODE_ARMED: frozenset({"node", "nodes", "inbox", "worker"}),
    Kind.NODE_ROUTES: frozenset({"node", "routes"}),
    Kind.NODE_INPUT: frozenset({"node", "output"}),
    Kind.NODE_OUTPUT: frozenset({"output"}),
    Kind.NODE_PROBE: frozenset({"node", "routes"}),
    Kind.NODE_STATE: frozenset({"node", "state"}),
    Kind.SLOT_CALL: frozenset({"slot", "call"}),
    Kind.SLOT_RESULT: frozenset({"slot", "status", "call"}),
    Kind.SLOT_ACCEPTED: frozenset({"node", "slot", "worker"}),
    Kind.CONFIG_APPLY: frozenset({"yaml"}),
    Kind.CONFIG_GET: frozenset(),
    Kind.CONFIG_HISTORY: frozenset(),
    Kind.CONFIG_REPLY: frozenset({"status"}),
    Kind.WORKER_HELLO: frozenset({"worker", "nodes"}),
    Kind.TRACE: frozenset({"events"}),
    Kind.ERROR: frozenset({"code", "message"}),
}


INPUT_OUTPUT_KEYS = ("node", "role", "status", "text", "answer", "answerless", "error")
"""What a successor reads of a predecessor's output; the per-call records stay with the gateway."""


def input_output(output: dict[str, Any]) -> dict[str, Any]:
    """The part of a node's output that a ``node.input`` carries to its successors."""
    return {key: output[key] for key in INPUT_OUTPUT_KEYS if key in output}
