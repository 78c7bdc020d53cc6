"""The Stage-2 planner: Stage 1's LLMs from the current policy, the DAG from the newest classifier.

:class:`Stage2Planner` (registry kind ``stage2``, heavy: it runs in a planning thread,
off the NATS loop) plans each query in two steps:

1. the current Stage-1 policy version (a :class:`~hieramas.learner.provider.NatsPolicyProvider`)
   assigns the LLMs, greedily unless the query explores;
2. the newest classifier version (a :class:`NatsClassifierProvider`, following the store's
   ``dag.`` series, :data:`~hieramas.learner.store.CLASSIFIER_PREFIX`) generates ``candidates``
   DAGs seeded by the query text, scores them in one batch with that assignment and the
   query embedding the policy read, and the top-1's edges go into the ``Assignment``:
   the runtime executes exactly the scored edges (``recent`` keeps the last choices, so a
   test or a trace reader can check), and the query's trace event records the classifier
   version, the number of candidates and the executed DAG's score and rank
   (:class:`~hieramas.wire.events.TopologyRecord`).

With no policy loaded the query is planned statically; with no classifier (or one trained
for another layout or embedder) it keeps Stage 1's assignment on the config's edges.  Both
are counted, never failed.  Options (config ``planner: {kind: stage2, ...}``): the policy
provider's (``mode``, ``seed``, ``embedder``) and ``candidates`` (200), ``top_k`` (1; the
best is executed), ``vote_k`` (1: the gateway runs the ``vote_k`` best-scored DAGs as child
runs of the query and answers with their voted final answer, :mod:`hieramas.controller.vote`; not for
training queries), ``dag_seed`` (0), ``d_min``/``d_max`` (0.3/0.7), ``skip_roles`` (0: drop up
to this many answering supernodes that lean to ``skip``, :mod:`.roleskip`; not for
training queries).
"""

from __future__ import annotations

import threading
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import torch

from hieramas.controller.config import SKIP, HieraConfig
from hieramas.controller.planner import Assignment, Planner, PlanRequest, StaticPlanner
from hieramas.learner.dagcheckpoint import ClassifierMeta, decode_classifier
from hieramas.learner.dagplanning import TopologyChoice, TopologyChooser
from hieramas.learner.follower import SeriesFollower
from hieramas.learner.provider import LoadedPolicy, layout_key, provider
from hieramas.learner.roleskip import skip_roles
from hieramas.learner.store import CLASSIFIER_PREFIX, PolicyStore
from hieramas.wire.events import TopologyRecord

if TYPE_CHECKING:
    from hieramas.bus import Bus

__all__ = [
    "LoadedClassifier",
    "NatsClassifierProvider",
    "Stage2Planner",
    "classifier_store",
    "planner",
]


def classifier_store(bus: Bus) -> PolicyStore:
    """The store of classifier versions (the policy buckets, ``dag.`` keys)."""
    return PolicyStore(bus, prefix=CLASSIFIER_PREFIX)


class LoadedClassifier:
    """One published classifier version and its chooser (thread-safe: the net is frozen)."""

    def __init__(
        self,
        meta: ClassifierMeta,
        chooser: TopologyChooser,
    ) -> None:
        self.meta = meta
        self.chooser = chooser
        self._key = layout_key(chooser.net.layout)

    @classmethod
    def from_blob(cls, blob: bytes, **chooser: Any) -> LoadedClassifier:
        """Decode a checkpoint; :class:`CheckpointError` if unusable."""
        checkpoint = decode_classifier(blob)
        net = checkpoint.net()
        meta = checkpoint.meta
        return cls(meta, TopologyChooser(net, version=meta.version, **chooser))

    @property
    def version(self) -> int:
        return self.meta.version

    def fits(self, policy: LoadedPolicy) -> bool:
        """Whether it scores DAGs for ``policy``'s slot layout and query embedder."""
        return layout_key(policy.layout) == self._key and policy.meta.embedder == self.meta.embedder


class ClassifierSource(Protocol):
    """Where the planner gets the newest classifier (:class:`NatsClassifierProvider`)."""

    def current(self) -> LoadedClassifier | None: ...

    async def start(self, bus: Bus) -> None: ...

    async def stop(self) -> None: ...


class PolicySource(Protocol):
    """Where the planner gets the current Stage-1 policy (``NatsPolicyProvider``)."""

    def current(self) -> LoadedPolicy | None: ...

    async def start(self, bus: Bus) -> None: ...

    async def stop(self) -> None: ...


class NatsClassifierProvider(SeriesFollower[LoadedClassifier]):
    """Follows ``dag.current`` in the policy store: loads each version off the loop, swaps it in.

    ``loaded`` maps each version loaded to the monotonic time it became current
    (:class:`.follower.SeriesFollower`).
    """

    name = "classifier"

    def __init__(
        self,
        *,
        store_factory: Callable[[Bus], PolicyStore] = classifier_store,
        **chooser: Any,
    ) -> None:
        super().__init__(store_factory=store_factory)
        self._chooser = chooser

    def build(self, blob: bytes) -> LoadedClassifier:
        return LoadedClassifier.from_blob(blob, **self._chooser)

    def describe(self, loaded: LoadedClassifier) -> dict[str, Any]:
        return {"policy": loaded.meta.policy_version}


class Stage2Planner:
    """Stage 1's assignment plus the classifier's DAG (see the module docstring)."""

    kind = "stage2"

    def __init__(
        self,
        policies: PolicySource,
        classifiers: ClassifierSource,
        *,
        dag_seed: int = 0,
        heavy: bool = True,
        fallback: Planner | None = None,
        keep_recent: int = 256,
        skip_roles: int = 0,
        vote_k: int = 1,
    ) -> None:
        if vote_k < 1:
            raise ValueError("vote_k must be ≥ 1")
        self.policies = policies
        self.vote_k = vote_k
        """Top-k with a vote: run this many best-scored DAGs per (non-training) query."""
        self.classifiers = classifiers
        self.dag_seed = dag_seed
        self.skip_roles = skip_roles
        """Role skipping: drop up to this many answering supernodes (:mod:`.roleskip`)."""
        self.heavy = heavy
        self.fallback = fallback or StaticPlanner()
        self.counters: Counter[str] = Counter()
        self.recent: OrderedDict[str, tuple[int, TopologyChoice]] = OrderedDict()
        """query id -> (classifier version, its candidates, scores and choice), the newest few."""
        self._keep = keep_recent
        self._lock = threading.Lock()

    def seed_for(self, task_text: str) -> int:
        """The candidate generator's seed for a query: its text and ``dag_seed``."""
        crc = zlib.crc32(task_text.encode("utf-8", errors="replace"))
        return (self.dag_seed * 1_000_003 + crc) & 0x7FFF_FFFF

    def assign(self, config: HieraConfig, request: PlanRequest) -> Assignment:
        policy = self.policies.current()
        if policy is None or not policy.fits(config):
            self._count("no_policy" if policy is None else "mismatch")
            return replace(self.fallback.assign(config, request), policy_version=None)
        planned, assignment = policy.planner.plan_assignment(config, request)
        assignment = replace(assignment, policy_version=policy.version)
        clf = self.classifiers.current()
        if clf is None or planned.embedding is None or not clf.fits(policy):
            self._count("no_classifier" if clf is None else "classifier_mismatch")
            return assignment
        query = torch.from_numpy(planned.embedding)
        actions = planned.decision.actions
        if self.skip_roles and not request.explore:  # a training query keeps what it sampled
            actions, assignment = self._skip(policy, query, actions, assignment)
        choice = clf.chooser.choose(query, actions, seed=self.seed_for(request.task_text))
        with self._lock:
            self.counters["chosen"] += 1
            self.recent[request.query_id] = (clf.version, choice)
            while len(self.recent) > self._keep:
                self.recent.popitem(last=False)
        ranked = choice.ranked[: self.vote_k if not request.explore else 1]
        runs = tuple(
            replace(
                assignment,
                edges=choice.candidates.edges(i),
                topology=TopologyRecord(
                    classifier_version=clf.version,
                    candidates=len(choice.scores),
                    score=float(choice.scores[i]),
                    rank=rank,
                ),
            )
            for rank, i in enumerate(ranked, 1)
        )
        return replace(runs[0], vote=runs if len(runs) > 1 else ())

    def _skip(
        self, policy: LoadedPolicy, query: torch.Tensor, actions: tuple[int, ...], a: Assignment
    ) -> tuple[tuple[int, ...], Assignment]:
        new = skip_roles(policy.planner.policy, query, actions, self.skip_roles)
        if new == actions:
            return actions, a
        synth = dict(a.synthesizers)
        for slot, old, now in zip(policy.layout.slots, actions, new, strict=True):
            if old != now:
                synth[slot.node] = SKIP
        self._count("roles_skipped")
        return new, replace(a, synthesizers=synth)

    def _count(self, what: str) -> None:
        with self._lock:
            self.counters[what] += 1

    async def start(self, bus: Bus) -> None:
        await self.policies.start(bus)
        await self.classifiers.start(bus)

    async def stop(self) -> None:
        await self.classifiers.stop()
        await self.policies.stop()


_CHOOSER_OPTIONS = {"candidates": int, "top_k": int, "d_min": float, "d_max": float}


def planner(options: Mapping[str, Any]) -> Stage2Planner:
    """The planner registry's factory for kind ``stage2`` (options in the module docstring)."""
    opts = dict(options)
    chooser = {k: cast(opts.pop(k)) for k, cast in _CHOOSER_OPTIONS.items() if k in opts}
    dag_seed = int(opts.pop("dag_seed", 0))
    skip = int(opts.pop("skip_roles", 0))
    vote_k = int(opts.pop("vote_k", 1))
    if vote_k > chooser.get("top_k", 1):  # the chooser ranks as many DAGs as the vote runs
        chooser["top_k"] = vote_k
    policies = provider(opts)  # checks the remaining options
    return Stage2Planner(
        policies,
        NatsClassifierProvider(**chooser),
        dag_seed=dag_seed,
        skip_roles=skip,
        vote_k=vote_k,
    )
