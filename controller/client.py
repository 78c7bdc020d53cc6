"""Client calls to a running HieraMAS: ask a query, apply / read configs.

A request that finds nobody serving its subject ("no responders": no controller is up, or
one is restarting, or the client's NATS server has just come back and the controllers have
not subscribed again yet) reached no one, so it is safe to send again: it is retried with
exponential backoff and jitter within the request's own time budget.  Any other failure is
not retried (the query may be running).

A query is also sent again, with the same query id and reply subject, while no answer came:
after :data:`RESEND_FIRST_S`, then at doubling intervals (the request, or its answer, may
have been lost with a controller or a NATS server that died).  The copy is marked as one
(:data:`~controller.failover.RESENT`), so a gateway that is not running it checks the
query's failover record before running it: a query that some live gateway runs is not run
twice, and one that no gateway has is run.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential,
    wait_random,
)

from hieramas.bus import Bus, BusError, RemoteError
from hieramas.controller.failover import RESENT
from hieramas.wire import Envelope, Kind, Subjects, new_id
from hieramas.wire.traceparent import parse_traceparent

__all__ = ["HieraClient"]

RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0
"""Backoff between sends of a request nobody served: 50 ms doubling up to 2 s, plus jitter."""
RESEND_FIRST_S = 1.0
"""A query not answered this long is sent again (then at doubling intervals up to 8 s)."""


def _nobody_served(exc: BaseException) -> bool:
    return isinstance(exc, BusError) and exc.code == "no_responders"


class HieraClient:
    """Thin request/reply wrappers over a :class:`Bus` (use from the loop with ``await``)."""

    def __init__(
        self, bus: Bus, subjects: Subjects | None = None, *, sender: str = "client"
    ) -> None:
        self.bus = bus
        self.subjects = subjects or Subjects()
        self.sender = sender

    async def ask(
        self,
        text: str,
        *,
        domain: str | None = None,
        timeout_s: float = 120.0,
        config_version: int | None = None,
        item_id: str | None = None,
        explore: bool = False,
        traceparent: str | None = None,
    ) -> dict[str, Any]:
        """Answer one query; the result map always has ``status`` (``ok`` or an error code).

        ``traceparent`` (W3C, e.g. from the caller's own OpenTelemetry span) makes the
        query's trace id the caller's, and its spans children of the caller's span; a
        malformed one raises :class:`WireError` (``bad_traceparent``) before anything is sent.

        A failed query is a result too (``status`` is its code, ``error`` says why), even
        when the gateway refused it with an ``error`` envelope.  Raises only when no
        answer came: :class:`BusError` ("no_responders", "timeout", "closed"), or
        :class:`WireError` for a query over the server's payload limit or a garbled reply.
        """
        payload: dict[str, Any] = {"text": text, "timeout_s": timeout_s}
        if domain:
            payload["domain"] = domain
        if config_version:
            payload["config_version"] = config_version
        if item_id:
            payload["item_id"] = item_id  # the dataset item: graders key on it in the traces
        if explore:
            payload["explore"] = True  # a training query: a learned planner samples its plan
        # 128-bit trace ids, as OpenTelemetry's: the id a user sees is the one in their backend
        trace_id = new_id() + new_id()
        if traceparent:
            caller = parse_traceparent(traceparent)
            payload["traceparent"] = caller.header()
            trace_id = caller.trace_id
        envelope = Envelope(
            kind=Kind.QUERY,
            payload=payload,
            query_id=new_id(),
            trace_id=trace_id,
            sender=self.sender,
        )
        try:
            # a query asked again joins its run at the gateway: resending it after a
            # reconnect (the request or its answer may have been lost) costs nothing
            reply = await self._request(
                self.subjects.query,
                envelope,
                timeout_s + 5.0,
                resend=True,
                again=msgspec.structs.replace(envelope, span_id=RESENT),
            )
        except RemoteError as exc:
            return {
                "status": exc.code,
                "error": exc.detail,
                "answer": None,
                "query_id": envelope.query_id,
                "trace_id": envelope.trace_id,
            }
        return dict(reply.payload)

    async def apply_config(self, yaml_text: str, *, source: str = "user") -> int:
        """Apply a config; returns its version (``RemoteError`` 'invalid_config' if rejected)."""
        reply = await self._config("apply", {"yaml": yaml_text, "source": source})
        return int(reply["version"])

    async def get_config(self, version: int | None = None) -> dict[str, Any]:
        """The current (or a given) config version, with its YAML and parsed form.

        ``RemoteError`` "not_found", "corrupt_config" (the stored record is unreadable),
        "bad_request" or "internal" when it cannot be had.
        """
        return await self._config("get", {"version": version} if version else {})

    async def history(self) -> list[dict[str, Any]]:
        """Every applied version, oldest first (an unreadable one carries an ``error``)."""
        return list((await self._config("history", {}))["versions"])

    async def _config(self, op: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One config request: the reply payload, or ``RemoteError`` / ``BusError``."""
        kind = {"apply": Kind.CONFIG_APPLY, "get": Kind.CONFIG_GET, "history": Kind.CONFIG_HISTORY}[
            op
        ]
        envelope = Envelope(kind=kind, payload=payload, sender=self.sender)
        reply = await self._request(self.subjects.config(op), envelope, 15.0)
        return dict(reply.payload)

    async def _request(
        self,
        subject: str,
        envelope: Envelope,
        budget_s: float,
        *,
        resend: bool = False,
        again: Envelope | None = None,
    ) -> Envelope:
        """One request, sent again while nobody serves ``subject``, all within ``budget_s``:
        the reply, or the last error (``BusError`` "no_responders" once the budget is spent).
        ``resend``: also send it again after a reconnect, and (``again``, the copy to send)
        while no reply came (:meth:`Bus.request`)."""
        deadline = time.monotonic() + budget_s

        def out_of_time(state: RetryCallState) -> bool:
            return time.monotonic() + RETRY_FIRST_S >= deadline

        retrying = AsyncRetrying(
            retry=retry_if_exception(_nobody_served),
            wait=wait_exponential(multiplier=RETRY_FIRST_S, max=RETRY_MAX_S)
            + wait_random(0, RETRY_FIRST_S),
            stop=out_of_time,
            reraise=True,
            before_sleep=self._count_retry,
        )
        async for attempt in retrying:
            with attempt:
                timeout = max(deadline - time.monotonic(), 0.01)
                return await self.bus.arequest(
                    subject,
                    envelope,
                    timeout,
                    resend=resend,
                    again=again,
                    again_after=RESEND_FIRST_S if again is not None else 0.0,
                )
        raise AssertionError("unreachable")  # tenacity re-raises the last error

    def _count_retry(self, state: RetryCallState) -> None:
        self.bus.counters["client.no_responders_retried"] += 1
