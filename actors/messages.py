"""Typed records that actors send to themselves and receive from the worker.

Bus messages arrive as :class:`Inbound`; finished I/O comes back as
:class:`CallDone` (an LLM call) or :class:`RequestDone` (a NATS request), so
an actor's state only ever changes on its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import pykka

from hieramas.actors.trusted import ResolvedConfig
from hieramas.bus import Bus
from hieramas.controller.plan import Plan
from hieramas.llm.types import ChatResult, EndpointSpec, ModelSpec
from hieramas.tasks.codevote import VoteOutcome
from hieramas.wire import Envelope
from hieramas.wire.messages import SlotCall

__all__ = [
    "Arm",
    "CallDone",
    "Expire",
    "Inbound",
    "LocalCallsDone",
    "Redo",
    "RequestDone",
    "SlotDone",
    "SlotWork",
    "VoteDone",
    "tell_later",
]


@dataclass(frozen=True, slots=True)
class Inbound:
    """A decoded bus message whose payload the worker checked (``body``, its typed record),
    with the subject to answer on (if the sender waits)."""

    envelope: Envelope
    reply: str | None = None
    body: Any = None


@dataclass(frozen=True, slots=True)
class SlotWork:
    """A checked slot call, with the model and endpoint records the worker resolved for it
    from the trusted config version (never from the message)."""

    envelope: Envelope
    reply: str | None
    request: SlotCall
    attempt: int
    model: ModelSpec
    endpoint: EndpointSpec


@dataclass(frozen=True, slots=True)
class Arm:
    """Arm this node for one query: the activation, its decoded plan, the trusted config
    version it runs on, and (when the worker armed the whole query itself) the routes, so
    the node can start without waiting for them."""

    activation: Envelope
    plan: Plan
    gateway: str
    config: ResolvedConfig
    routes: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class CallDone:
    """An LLM call finished (``result`` is the exception when it failed)."""

    query_id: str
    tag: str
    result: ChatResult | BaseException
    started: float


@dataclass(frozen=True, slots=True)
class SlotDone:
    """A slot call the supernode made itself (its worker serves the slot): the call's
    ``llm_call`` event as a map, as a ``slot.result`` would carry it, and its text."""

    record: dict[str, Any]
    text: str


@dataclass(frozen=True, slots=True)
class RequestDone:
    """A NATS request finished (``result`` is the exception when it failed)."""

    query_id: str
    tag: str
    result: Envelope | BaseException


@dataclass(frozen=True, slots=True)
class LocalCallsDone:
    """Slot calls made in process finished, each with its ``slot@attempt`` tag and outcome
    (the exception when it failed)."""

    query_id: str
    results: list[tuple[str, SlotDone | BaseException]]


@dataclass(frozen=True, slots=True)
class Expire:
    """The query's deadline passed: drop its state."""

    query_id: str


@dataclass(frozen=True, slots=True)
class Redo:
    """Send slot call ``tag`` again: attempt ``attempt`` was lost (``reason`` says how)."""

    query_id: str
    tag: str
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class VoteDone:
    """An execution-based vote finished (``result`` is the exception when it failed)."""

    query_id: str
    tag: str
    result: VoteOutcome | BaseException


def tell_later(
    bus: Bus, delay_s: float, ref: pykka.ActorRef[Any], message: object
) -> asyncio.TimerHandle | None:
    """Deliver ``message`` to ``ref`` after ``delay_s`` (dropped if the actor has stopped).

    Returns the timer when called on the bus loop, so that it can be cancelled."""

    def deliver() -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            ref.tell(message)

    return bus.call_later(delay_s, deliver)
