"""The controller process: config store and its request API, the gateway, the worker registry."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from hieramas.bus import Bus, Handler, error_envelope
from hieramas.controller.config import ConfigError, PlannerConfig
from hieramas.controller.gateway import Gateway
from hieramas.controller.planner import Planner
from hieramas.controller.store import (
    ConfigStore,
    ContendedError,
    CorruptConfigError,
    StoredConfig,
)
from hieramas.liveness import Liveness
from hieramas.traces import TraceEmitter, ensure_trace_stream, wait_for_jetstream
from hieramas.wire import Envelope, Kind, Subjects, WireError

__all__ = ["CONTROL_QUEUE", "Controller"]

log = structlog.get_logger(__name__)

CONTROL_QUEUE = "hm-ctl"

ConfigOp = Callable[[Envelope], Awaitable[dict[str, Any]]]
"""One config request's work: its reply payload, or ``_Refused`` with a code."""


class _Refused(Exception):
    """A config request answered with an ``error`` envelope of this ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _answerless_roles(domain: str) -> set[str]:
    try:
        from hieramas.tasks import prompts

        return set(prompts.answerless_roles(domain))
    except Exception:
        return set()


class Controller:
    """Owns configs (validated, versioned, watched) and answers queries through its gateway."""

    def __init__(
        self,
        bus: Bus,
        *,
        subjects: Subjects | None = None,
        planner: Planner | None = None,
        planner_spec: PlannerConfig | None = None,
        emulator_url: str | None = None,
    ) -> None:
        self.bus = bus
        self.subjects = subjects or Subjects()
        self.store = ConfigStore(bus)
        self.traces = TraceEmitter(bus, self.subjects)
        self.liveness = Liveness(bus, self.subjects)
        self.gateway = Gateway(
            bus,
            self.store,
            subjects=self.subjects,
            planner=planner,
            planner_spec=planner_spec,
            traces=self.traces,
            emulator_url=emulator_url,
            answerless_roles=_answerless_roles,
            liveness=self.liveness,
            failover=True,  # other controllers' gateways finish its queries if it dies
        )
        self._subs: list[Any] = []

    def start(self) -> Controller:
        """Blocking start from a non-loop thread."""
        self.bus.call(self.astart(), timeout=60)
        return self

    def stop(self) -> None:
        self.bus.call(self.astop(), timeout=10)

    async def astart(self) -> None:
        await wait_for_jetstream(self.bus)
        await ensure_trace_stream(self.bus, self.subjects)
        self.traces.start()
        await self.store.open()
        if self.gateway.emulator_url:  # workers resolve ``kind: emulator`` endpoints with it
            await self.store.set_emulator_url(self.gateway.emulator_url)
        await self.store.watch()
        s = self.subjects
        for op, kind, work in (
            ("apply", Kind.CONFIG_APPLY, self._apply),
            ("get", Kind.CONFIG_GET, self._get),
            ("history", Kind.CONFIG_HISTORY, self._history),
        ):
            handler = self._handler(op, kind, work)
            self._subs.append(await self.bus.asubscribe(s.config(op), handler, queue=CONTROL_QUEUE))
        await self.liveness.start()
        await self.gateway.prepare()
        await self.gateway.start()
        await self.bus.nc.flush()
        log.info("controller.started", config_version=self.store.current_version)

    async def astop(self) -> None:
        await self.gateway.stop()
        await self.liveness.stop()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await self.store.close()
        await self.traces.flush(timeout=2.0)

    # -- config API ------------------------------------------------------------------
    def _handler(self, op: str, kind: Kind, work: ConfigOp) -> Handler:
        """A subscription handler that answers every ``op`` request on a task of its own."""

        def handle(envelope: Envelope, reply: str | None) -> None:
            if envelope.kind is not kind:
                subject = self.subjects.config(op)
                self.bus.reject(subject, reply, "kind", f"expected {kind}, got {envelope.kind}")
                return
            self.bus.spawn(self._answer(op, envelope, reply, work))

        return handle

    async def _answer(self, op: str, envelope: Envelope, reply: str | None, work: ConfigOp) -> None:
        """Run ``work`` and send its payload, or an ``error`` envelope whatever goes wrong."""
        try:
            payload = await work(envelope)
            if reply:
                answer = envelope.reply(Kind.CONFIG_REPLY, payload, sender="controller")
                self.bus.publish(reply, answer)  # encodes here: WireError if oversize
        except _Refused as exc:
            self._fail(op, envelope, reply, exc.code, str(exc))
        except WireError as exc:
            self._fail(op, envelope, reply, exc.code, f"the {op} reply cannot be sent: {exc}")
        except Exception as exc:
            log.exception("config.request_crashed", op=op)
            message = f"config {op} failed: {type(exc).__name__}: {exc}"
            self._fail(op, envelope, reply, "internal", message)

    def _fail(
        self, op: str, envelope: Envelope, reply: str | None, code: str, message: str
    ) -> None:
        """Log, count and answer a config request that failed."""
        self.bus.counters[f"config.failed.{code}"] += 1
        log.warning("config.request_failed", op=op, code=code, reason=message)
        if not reply:
            return
        try:
            self.bus.publish(
                reply, error_envelope(code, message, sender="controller", like=envelope)
            )
        except Exception:  # nothing more can be sent: at least it is on record
            self.bus.counters["config.reply_failed"] += 1
            log.exception("config.reply_failed", op=op, code=code)

    async def _apply(self, envelope: Envelope) -> dict[str, Any]:
        yaml_text = envelope.payload.get("yaml")
        if not isinstance(yaml_text, str):
            raise _Refused("bad_request", "'yaml' must be a string")
        source = str(envelope.payload.get("source") or envelope.sender or "user")
        try:
            stored = await self.store.apply(yaml_text, source=source)
        except ConfigError as exc:
            self.bus.counters["config.rejected"] += 1
            raise _Refused("invalid_config", str(exc)) from None
        except ContendedError as exc:
            raise _Refused("busy", str(exc)) from None
        return {"status": "ok", "version": stored.version}

    async def _get(self, envelope: Envelope) -> dict[str, Any]:
        stored = await self._stored(envelope.payload.get("version"))
        return {
            "status": "ok",
            "version": stored.version,
            "yaml": stored.yaml,
            "config": stored.config.model_dump(mode="json"),
            "applied_at": stored.applied_at,
            "source": stored.source,
            "workers": self._live_workers(),
        }

    async def _history(self, envelope: Envelope) -> dict[str, Any]:
        return {"status": "ok", "versions": await self.store.history()}

    async def _stored(self, version: Any) -> StoredConfig:
        """The requested version (the current one when none is given), or ``_Refused``."""
        try:
            wanted = int(version) if version else None
        except (TypeError, ValueError, OverflowError):  # e.g. a map, "x", or infinity
            raise _Refused("bad_request", f"'version' must be a number, not {version!r}") from None
        try:
            return await self.store.get(wanted)
        except KeyError as exc:
            raise _Refused("not_found", str(exc.args[0])) from None
        except CorruptConfigError as exc:
            raise _Refused("corrupt_config", str(exc)) from None

    def _live_workers(self) -> dict[str, Any]:
        return dict(self.liveness.info)
