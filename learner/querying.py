"""One dataset item through the live runtime, graded, with the LLMs its plan chose.

The training driver and the policy comparison ask items the same way: through
:class:`~hieramas.controller.client.HieraClient` (gateway, actors, LLM endpoints),
naming the item (``item_id``, the learner's grading key) and, for training, asking
the planner to sample (``explore``).  Each answer is graded here by the project's
deterministic graders (:mod:`hieramas.tasks.graders`), in a thread so that a slow
MATH check never holds the NATS loop, and the per-slot choices are read back from
the result's per-node records.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hieramas.controller.client import HieraClient
from hieramas.controller.config import SKIP
from hieramas.evaluation import ItemResult
from hieramas.learner.grading import unreachable_line
from hieramas.tasks.datasets import Item
from hieramas.tasks.graders import Grade, agrade, grade
from hieramas.tasks.sandbox import Sandbox

__all__ = ["Asked", "Selection", "ask_graded", "selection_of"]


@dataclass
class Selection:
    """How often each action filled synthesizer and proposer slots (``skip`` included)."""

    synthesizer: Counter[str] = field(default_factory=Counter)
    proposer: Counter[str] = field(default_factory=Counter)

    def add(self, other: Selection) -> None:
        self.synthesizer.update(other.synthesizer)
        self.proposer.update(other.proposer)

    def share(self, action: str, kind: str | None = None) -> float:
        """The fraction of slots (of ``kind``, or all) that ``action`` filled."""
        counters = [self.synthesizer, self.proposer] if kind is None else [getattr(self, kind)]
        total = sum(sum(c.values()) for c in counters)
        return sum(c[action] for c in counters) / total if total else 0.0

    def to_json(self) -> dict[str, dict[str, int]]:
        return {"synthesizer": dict(self.synthesizer), "proposer": dict(self.proposer)}

    @classmethod
    def from_json(cls, data: Mapping[str, Mapping[str, int]]) -> Selection:
        return cls(Counter(data.get("synthesizer") or {}), Counter(data.get("proposer") or {}))

    @classmethod
    def total(cls, parts: Iterable[Selection]) -> Selection:
        out = cls()
        for part in parts:
            out.add(part)
        return out


@dataclass(frozen=True)
class Asked:
    """One asked item: its graded row, whether a policy sampled its plan, what it chose."""

    row: ItemResult
    sampled: bool
    selection: Selection
    unreachable: bool = False
    """It failed because an LLM endpoint was unreachable: the learner does not train on it
    (:func:`~hieramas.learner.grading.infrastructure_failure`)."""


def selection_of(result: Mapping[str, Any], proposers: Mapping[str, int]) -> Selection:
    """The slot choices of one query result; ``proposers`` gives each supernode's proposer
    count (the slots of a dropped supernode are counted as ``skip``)."""
    sel = Selection()
    nodes = result.get("nodes") or {}
    skipped = set(result.get("skipped_nodes") or ())
    for name, count in proposers.items():
        if name in skipped:
            sel.synthesizer[SKIP] += 1
            sel.proposer[SKIP] += count
            continue
        node = nodes.get(name)
        models = node.get("models") if isinstance(node, Mapping) else None
        if not isinstance(models, Mapping):  # it never reported (the query failed first)
            continue
        sel.synthesizer[str(models.get("synthesizer"))] += 1
        for llm in models.get("proposers") or ():
            sel.proposer[SKIP if llm is None else str(llm)] += 1
    return sel


async def ask_graded(
    client: HieraClient,
    item: Item,
    *,
    config_version: int | None,
    explore: bool,
    proposers: Mapping[str, int],
    timeout_s: float = 120.0,
    sandbox: Sandbox | None = None,
) -> Asked:
    """Ask ``item`` through ``client`` and grade the answer (see the module docstring)."""
    try:
        result = await client.ask(
            item.question,
            domain=item.domain,
            timeout_s=timeout_s,
            config_version=config_version,
            item_id=item.id,
            explore=explore,
        )
    except Exception as exc:  # the bus itself failed: an explicit per-item error
        result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    outcome, predicted = "error", None
    if result.get("status") == "ok":
        text = str(result.get("text") or "")
        verdict: Grade
        if item.domain == "humaneval":
            verdict = await agrade(item, text, sandbox=sandbox)
        else:  # sympy may take a while on a MATH answer: never on the NATS loop
            verdict = await asyncio.to_thread(grade, item, text)
        outcome, predicted = verdict.outcome, verdict.predicted
    row = ItemResult(
        item_id=item.id,
        status=str(result.get("status")),
        outcome=outcome,
        predicted=predicted,
        gold=item.answer if item.domain != "humaneval" else "(tests)",
        cost_usd=float(result.get("cost_usd") or 0.0),
        tokens=int(result.get("prompt_tokens") or 0) + int(result.get("completion_tokens") or 0),
        latency_s=float(result.get("latency_s") or 0.0),
        config_version=int(result.get("config_version") or 0),
        error=result.get("error"),
        policy_version=result.get("policy_version"),
    )
    lines = [*(result.get("failures") or ()), str(result.get("error") or "")]
    unreachable = outcome == "error" and unreachable_line(map(str, lines)) is not None
    return Asked(row, bool(result.get("sampled")), selection_of(result, proposers), unreachable)
