"""Stage-2 plans kept in NATS: any controller of a running stack plans a query with the
assignment (Stage 1's LLMs and a chosen DAG) that a Stage-2 run decided for it.

``hieramas train --stage 2`` runs each candidate DAG as a query.  On its embedded stack an
in-process table planner holds those plans (:class:`~hieramas.learner.dagrun.TablePlanner`);
against a running stack (``--nats URL``) the query may be planned by any of its controllers,
so the plans go where they all read: the policy store's KV bucket, one key per query
(``dagplan.<digest of the query's item key>``), written before the query is asked and deleted
after it (:class:`PlannedClient`).  The config the run applies names this module's provider::

    planner: {kind: learned, provider: "hieramas.learner.dagtable:provider", version: 7}

Its policy (the frozen Stage-1 ``version``) looks the query's key up in a planning thread;
a query without a stored plan is planned statically (:class:`PolicyMismatch`, counted by
the learned planner), never failed.  Writing needs the learner's NATS permissions on the
policy bucket; controllers already read it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from nats.js.errors import KeyNotFoundError

from hieramas.controller.config import HieraConfig
from hieramas.controller.learned import PolicyMismatch
from hieramas.controller.planner import Assignment, PlanRequest
from hieramas.learner.store import PolicyStore

if TYPE_CHECKING:
    from hieramas.bus import Bus

__all__ = [
    "PLAN_PREFIX",
    "PROVIDER",
    "PlanTableProvider",
    "PlannedClient",
    "decode_assignment",
    "encode_assignment",
    "plan_key",
    "table_planner",
]

PLAN_PREFIX = "dagplan."
PROVIDER = "hieramas.learner.dagtable:provider"
LOOKUP_TIMEOUT_S = 10.0


def plan_key(item_key: str) -> str:
    """The KV key of one query's plan (a digest: item keys hold characters KV keys may not)."""
    return PLAN_PREFIX + hashlib.sha256(item_key.encode("utf-8")).hexdigest()[:40]


def encode_assignment(assignment: Assignment) -> bytes:
    """The parts of an assignment a plan fixes: the LLMs of every slot and the edges."""
    return json.dumps(
        {
            "proposers": assignment.proposers,
            "synthesizers": assignment.synthesizers,
            "edges": [list(e) for e in assignment.edges],
        }
    ).encode()


def decode_assignment(raw: bytes) -> Assignment:
    """Inverse of :func:`encode_assignment`; ``ValueError`` if malformed."""
    try:
        doc = json.loads(raw)
        return Assignment(
            proposers={str(n): [str(m) for m in ms] for n, ms in doc["proposers"].items()},
            synthesizers={str(n): str(m) for n, m in doc["synthesizers"].items()},
            edges=[(str(a), str(b)) for a, b in doc["edges"]],
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"not a stored plan: {exc}") from None


class _HasTable(Protocol):
    table: dict[str, Assignment]


class PlannedClient:
    """A client whose ``ask(..., item_id=key)`` first stores ``planner.table[key]`` as the
    query's plan (when the table has one) and deletes it once the query has ended."""

    def __init__(self, client: Any, planner: _HasTable, store: PolicyStore):
        self.client = client
        self.planner = planner
        self.store = store

    async def ask(self, question: str, *, item_id: str, **kw: Any) -> Any:
        plan = self.planner.table.get(item_id)
        if plan is None:
            return await self.client.ask(question, item_id=item_id, **kw)
        key = plan_key(item_id)
        await self.store.kv.put(key, encode_assignment(plan))
        try:
            return await self.client.ask(question, item_id=item_id, **kw)
        finally:
            await self.store.kv.purge(key)  # its history too: the bucket keeps no dead plans

    def __getattr__(self, name: str) -> Any:  # apply_config and the rest: the client's own
        return getattr(self.client, name)


@dataclass
class _TablePolicy:
    """The 'policy' a :class:`PlanTableProvider` hands out: a lookup of the query's plan."""

    version: int
    provider: PlanTableProvider

    def assign(self, config: HieraConfig, request: PlanRequest) -> Assignment:
        return self.provider.lookup(request)


class PlanTableProvider:
    """The controller's ``PolicyProvider`` of stored Stage-2 plans (see the module docstring)."""

    def __init__(self, version: int) -> None:
        self._policy = _TablePolicy(version, self)
        self._bus: Bus | None = None
        self._store: PolicyStore | None = None

    def current(self) -> _TablePolicy | None:
        return self._policy if self._store is not None else None

    async def start(self, bus: Bus) -> None:
        self._bus = bus
        self._store = await PolicyStore(bus).open()

    async def stop(self) -> None:
        pass

    def lookup(self, request: PlanRequest) -> Assignment:
        """The stored plan of ``request``'s item key (in a planning thread, off the loop)."""
        assert self._bus is not None and self._store is not None
        if not request.item_id:
            raise PolicyMismatch("a query without an item key has no Stage-2 plan")
        try:
            entry = self._bus.call(self._store.kv.get(plan_key(request.item_id)), LOOKUP_TIMEOUT_S)
        except KeyNotFoundError:
            raise PolicyMismatch(f"no stored Stage-2 plan for {request.item_id!r}") from None
        except Exception as exc:  # NATS timed out or failed: plan statically, counted
            raise PolicyMismatch(f"the Stage-2 plan of {request.item_id!r}: {exc!r}") from None
        try:
            return decode_assignment(entry.value or b"")
        except ValueError as exc:
            raise PolicyMismatch(f"{request.item_id!r}: {exc}") from None


def provider(options: Mapping[str, Any]) -> PlanTableProvider:
    """The planner registry's factory (``provider: "hieramas.learner.dagtable:provider"``)."""
    opts = dict(options)
    unknown = set(opts) - {"version"}
    if unknown:
        raise ValueError(f"unknown plan table option(s): {', '.join(sorted(unknown))}")
    return PlanTableProvider(int(opts.get("version", 0)))


def table_planner(version: int) -> dict[str, Any]:
    """The ``planner`` block of a config planned from stored plans (Stage 1's ``version``)."""
    return {"kind": "learned", "provider": PROVIDER, "version": version}
