"""The controller process: config store and its request API, the gateway, the worker registry."""

from __future__ import annotations

import contextlib
from typing import Any

import structlog

from hieramas.bus import Bus, error_envelope
from hieramas.controller.config import ConfigError
from hieramas.controller.gateway import Gateway
from hieramas.controller.planner import Planner
from hieramas.controller.store import ConfigStore
from hieramas.liveness import Liveness
from hieramas.traces import TraceEmitter, ensure_trace_stream, wait_for_jetstream
from hieramas.wire import Envelope, Kind, Subjects

__all__ = ["CONTROL_QUEUE", "Controller"]

log = structlog.get_logger(__name__)

CONTROL_QUEUE = "hm-ctl"


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
            traces=self.traces,
            emulator_url=emulator_url,
            answerless_roles=_answerless_roles,
            liveness=self.liveness,
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
        await self.store.watch()
        s = self.subjects
        for op, handler in (
            ("apply", self._on_apply),
            ("get", self._on_get),
            ("history", self._on_history),
        ):
            self._subs.append(await self.bus.asubscribe(s.config(op), handler, queue=CONTROL_QUEUE))
        await self.liveness.start()
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
    def _reply(self, envelope: Envelope, reply: str | None, payload: dict[str, Any]) -> None:
        if reply:
            self.bus.publish(reply, envelope.reply(Kind.CONFIG_REPLY, payload, sender="controller"))

    def _on_apply(self, envelope: Envelope, reply: str | None) -> None:
        async def apply() -> None:
            yaml_text = envelope.payload.get("yaml")
            if not isinstance(yaml_text, str):
                self._error(envelope, reply, "bad_request", "'yaml' must be a string")
                return
            try:
                stored = await self.store.apply(
                    yaml_text,
                    source=str(envelope.payload.get("source") or envelope.sender or "user"),
                )
            except ConfigError as exc:
                self.bus.counters["config.rejected"] += 1
                log.warning("config.rejected", problems=exc.problems)
                self._error(envelope, reply, "invalid_config", str(exc))
                return
            self._reply(envelope, reply, {"status": "ok", "version": stored.version})

        self.bus.spawn(apply())

    def _on_get(self, envelope: Envelope, reply: str | None) -> None:
        async def get() -> None:
            version = envelope.payload.get("version")
            try:
                stored = await self.store.get(int(version) if version else None)
            except (KeyError, ValueError) as exc:
                self._error(envelope, reply, "not_found", str(exc.args[0]))
                return
            self._reply(
                envelope,
                reply,
                {
                    "status": "ok",
                    "version": stored.version,
                    "yaml": stored.yaml,
                    "config": stored.config.model_dump(mode="json"),
                    "applied_at": stored.applied_at,
                    "source": stored.source,
                    "workers": self._live_workers(),
                },
            )

        self.bus.spawn(get())

    def _on_history(self, envelope: Envelope, reply: str | None) -> None:
        async def history() -> None:
            self._reply(envelope, reply, {"status": "ok", "versions": await self.store.history()})

        self.bus.spawn(history())

    def _live_workers(self) -> dict[str, Any]:
        return dict(self.liveness.info)

    def _error(self, envelope: Envelope, reply: str | None, code: str, message: str) -> None:
        if reply:
            self.bus.publish(
                reply, error_envelope(code, message, sender="controller", like=envelope)
            )
