"""What a worker trusts: the stored config versions, which only the controller writes.

A message never tells a worker where to send a call or which secret to send with it.
A slot call names an LLM of the pool and (in its envelope) a config version; the worker
reads that version from the config store, once, and takes the LLM's model id, prices and
endpoint from it.  Anything the version does not have is refused with a typed error
(:class:`Refused`), counted, and answered.  An endpoint's ``api_key_env`` is read only if
the worker's :class:`KeyPolicy` allows it: ``HIERAMAS_KEY_*`` by default, plus the names the
worker is given (``--key-env``, ``$HIERAMAS_KEY_ENV``), and never a ``HIERAMAS_NATS_*``
setting, so a worker cannot be made to send its NATS credentials, or any other variable of
its environment, to an endpoint.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

import structlog

from hieramas.bus import Bus
from hieramas.controller.config import (
    DEFAULT_KEY_PATTERN,
    NATS_VARIABLES,
    ConfigError,
    HieraConfig,
)
from hieramas.controller.store import ConfigStore, CorruptConfigError
from hieramas.llm.types import EndpointSpec, ModelSpec
from hieramas.wire.subjects import DECISION_NODE

__all__ = [
    "EMULATOR_ENV",
    "KEY_ENV",
    "REFUSALS",
    "KeyPolicy",
    "Refused",
    "ResolvedConfig",
    "TrustedConfigs",
    "refuse",
]

log = structlog.get_logger(__name__)

KEY_ENV = "HIERAMAS_KEY_ENV"
"""Comma-separated names of further variables a worker may read API keys from."""
EMULATOR_ENV = "HIERAMAS_EMULATOR_URL"
"""A worker's own base URL for ``kind: emulator`` endpoints (else the controller's, from the
store)."""

MISSING_FOR_S = 2.0
"""A version found missing is not looked up again for this long (a storm of forged versions
costs one store read each per this period, not one per message)."""


class Refused(Exception):
    """A message that names something the trusted config does not allow; ``code`` is stable:
    ``unknown_config``, ``config_busy``, ``unknown_llm``, ``no_base_url``,
    ``key_not_allowed``, ``unknown_node``, ``unknown_slot``, ``overloaded``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


REFUSALS = frozenset({"unknown_llm", "no_base_url", "key_not_allowed"})
"""Refusal codes about endpoints (counted under ``endpoint.refused``)."""


def refuse(bus: Bus, subject: str, reply: str | None, refused: Refused) -> None:
    """A call that names what the trusted config does not have: logged, counted (endpoint
    refusals also under ``endpoint.refused``) and, if ``reply`` is given, answered."""
    if refused.code in REFUSALS:
        bus.counters["endpoint.refused"] += 1
    bus.reject(subject, reply, refused.code, str(refused))


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    """Which environment variables may hold an LLM API key on this worker."""

    names: frozenset[str] = frozenset()
    """Further exact names (besides :attr:`pattern`)."""
    pattern: str = DEFAULT_KEY_PATTERN

    @classmethod
    def from_env(cls, names: Iterable[str] = ()) -> KeyPolicy:
        """The default pattern, plus ``names`` and those listed in ``$HIERAMAS_KEY_ENV``."""
        listed = [n.strip() for n in os.environ.get(KEY_ENV, "").split(",")]
        return cls(names=frozenset(n for n in [*names, *listed] if n))

    def allows(self, variable: str) -> bool:
        """May ``variable`` be read as an API key?  Never a NATS setting."""
        if variable.startswith(NATS_VARIABLES):
            return False
        return fnmatchcase(variable, self.pattern) or variable in self.names

    def describe(self) -> str:
        """The allowed names, for error messages (names only, never values)."""
        return ", ".join([self.pattern, *sorted(self.names)])


class ResolvedConfig:
    """One stored config version as a worker uses it: its nodes, and the model and endpoint
    record of each LLM (or why it is refused), built once per version."""

    __slots__ = ("config", "endpoints", "models", "version")

    def __init__(
        self, version: int, config: HieraConfig, *, policy: KeyPolicy, emulator_url: str | None
    ) -> None:
        self.version = version
        self.config = config
        self.models = {name: config.model_spec(name) for name in config.llms}
        self.endpoints: dict[str, EndpointSpec | Refused] = {}
        for name in config.endpoints:
            try:
                spec = config.endpoint_spec(name, emulator_url)
            except ConfigError:
                self.endpoints[name] = Refused(
                    "no_base_url",
                    f"endpoint {name!r} of config version {version} has no base_url and this "
                    "worker knows no emulator URL",
                )
                continue
            if spec.api_key_env and not policy.allows(spec.api_key_env):
                self.endpoints[name] = Refused(
                    "key_not_allowed",
                    f"endpoint {name!r}: api_key_env {spec.api_key_env!r} is not a variable this "
                    f"worker reads keys from (allowed: {policy.describe()}); rename the variable "
                    f"or start the worker with --key-env {spec.api_key_env}",
                )
                continue
            self.endpoints[name] = spec

    def call_specs(self, llm: str) -> tuple[ModelSpec, EndpointSpec]:
        """The model and endpoint records of pool LLM ``llm``; :class:`Refused` if it has none."""
        model = self.models.get(llm)
        if model is None:
            raise Refused("unknown_llm", f"config version {self.version} has no LLM {llm!r}")
        endpoint = self.endpoints[model.endpoint]  # the config was validated: it exists
        if isinstance(endpoint, Refused):
            raise endpoint
        return model, endpoint

    def slot_specs(self, node: str, slot: str, llm: str) -> tuple[ModelSpec, EndpointSpec]:
        """:meth:`call_specs` of ``llm`` for slot ``slot`` of ``node``; :class:`Refused`
        (``unknown_slot``) if this version has no such slot."""
        if not self.has_slot(node, slot):
            raise Refused(
                "unknown_slot", f"config version {self.version} has no slot {slot} of node {node!r}"
            )
        return self.call_specs(llm)

    def has_node(self, node: str) -> bool:
        """Is ``node`` a supernode of this version, or the decision node?"""
        return node == DECISION_NODE or node in self.config.supernodes

    def has_slot(self, node: str, tag: str) -> bool:
        """Is ``tag`` (``p<i>`` or ``synth``) a slot of supernode ``node`` in this version?"""
        spec = self.config.supernodes.get(node)
        if spec is None:
            return False
        if tag == "synth":
            return True
        index = tag[1:]
        return tag[:1] == "p" and index.isdigit() and int(index) < len(spec.proposers)


Loaded = Callable[[ResolvedConfig | Refused], None]


class TrustedConfigs:
    """The config versions this worker has read, by number (a bounded cache).

    :meth:`get` answers from the cache on the hot path; :meth:`load` reads a version from
    the store (once, however many messages wait for it) and calls back on the bus loop.
    """

    def __init__(
        self,
        bus: Bus,
        *,
        policy: KeyPolicy | None = None,
        emulator_url: str | None = None,
        store: ConfigStore | None = None,
        max_versions: int = 16,
        max_loading: int = 32,
    ) -> None:
        self.bus = bus
        self.policy = policy or KeyPolicy.from_env()
        self.emulator_url = emulator_url or os.environ.get(EMULATOR_ENV) or None
        self.store = store or ConfigStore(bus)
        self.max_versions = max_versions
        self.max_loading = max_loading
        self._versions: dict[int, ResolvedConfig] = {}
        self._missing: dict[int, tuple[float, Refused]] = {}
        self._loading: dict[int, list[Loaded]] = {}

    def get(self, version: int) -> ResolvedConfig | None:
        """Version ``version`` if it is cached."""
        return self._versions.get(version)

    def load(self, version: int, then: Loaded) -> None:
        """Read ``version`` from the store, then call ``then`` with it or a :class:`Refused`
        (on the loop; at once if the answer is known)."""
        cached = self._versions.get(version)
        if cached is not None:
            then(cached)
            return
        if version < 1:
            then(Refused("unknown_config", f"config version {version} cannot exist"))
            return
        missing = self._missing.get(version)
        if missing is not None and missing[0] > time.monotonic():
            then(missing[1])
            return
        waiting = self._loading.get(version)
        if waiting is not None:
            waiting.append(then)
            return
        if len(self._loading) >= self.max_loading:
            self.bus.counters["configs.busy"] += 1
            then(Refused("config_busy", f"too many config versions loading to read {version}"))
            return
        self._loading[version] = [then]
        self.bus.spawn(self._load(version))

    async def _load(self, version: int) -> None:
        result: ResolvedConfig | Refused
        try:
            result = await self._fetch(version)
        except Refused as exc:
            result = exc
        except Exception as exc:  # the store is unreachable, say: refuse now, retry later
            result = Refused("unknown_config", f"config version {version} cannot be read: {exc}")
        if isinstance(result, ResolvedConfig):
            if len(self._versions) >= self.max_versions:
                del self._versions[next(iter(self._versions))]  # the oldest read
            self._versions[version] = result
            self.bus.counters["configs.loaded"] += 1
        else:
            if len(self._missing) >= 4 * self.max_loading:
                self._missing.clear()
            self._missing[version] = (time.monotonic() + MISSING_FOR_S, result)
            self.bus.counters["configs.missing"] += 1
            log.warning("configs.unreadable", version=version, code=result.code, reason=str(result))
        for then in self._loading.pop(version, []):
            try:
                then(result)
            except Exception:
                self.bus.counters["configs.callback_failed"] += 1
                log.exception("configs.callback_failed", version=version)

    async def _fetch(self, version: int) -> ResolvedConfig:
        store = self.store
        if not store.bound:
            try:
                await store.bind()
            except Exception:
                raise Refused("unknown_config", "no config has been applied yet") from None
        try:
            stored = await store.get(version)
        except KeyError:
            raise Refused("unknown_config", f"config version {version} does not exist") from None
        except CorruptConfigError as exc:
            raise Refused("unknown_config", str(exc)) from None
        emulator = self.emulator_url or await store.emulator_url()
        return ResolvedConfig(version, stored.config, policy=self.policy, emulator_url=emulator)
