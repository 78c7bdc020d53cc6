"""Grading assembled queries into episodes, with the project's deterministic graders only.

A query that names a dataset item (``item_id``, looked up by its domain's
dataset in the data directory) is graded twice over:

- its **final** answer: the query's text through :func:`hieramas.tasks.graders.agrade`,
  as an evaluation grades it (HumanEval runs in the sandbox, awaited);
- each **supernode's** own answer, the key its worker parsed once
  (``SupernodeRun.answer``), against the item's gold: equal letters (MMLU), equal
  numbers (GSM8K), :func:`math_equivalent` (MATH), the tests in the sandbox
  (HumanEval).  No answer, a failed node, or a node that never reported counts
  as wrong.

Nothing here asks an LLM.  A query with no item has no ground truth: its
episode is ungraded (``final_correct`` ``None``) until a feedback score grades
its final answer (:func:`with_feedback`).  Blocking graders (MATH may call
sympy) run in a thread, so the caller's loop never waits on them.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from hieramas.controller.config import SKIP, HieraConfig
from hieramas.learner.assembly import Assembled
from hieramas.learner.episode import Episode, NodeOutcome
from hieramas.learner.slots import SlotAssignment, SlotLayout
from hieramas.tasks import datasets
from hieramas.tasks.datasets import Item
from hieramas.tasks.graders import (
    Grade,
    agrade,
    grade,
    grade_humaneval,
    math_equivalent,
    numbers_equal,
)
from hieramas.tasks.sandbox import Sandbox
from hieramas.wire.events import QueryDone

__all__ = [
    "DATASET_OF_DOMAIN",
    "INFRASTRUCTURE_KINDS",
    "POLICY_FAILURES",
    "ItemIndex",
    "Rejected",
    "grade_episode",
    "infrastructure_failure",
    "unreachable_line",
    "with_feedback",
]

DATASET_OF_DOMAIN: Mapping[str, str] = {
    "mmlu": "mmlu_redux",
    "math": "math500",
    "gsm8k": "gsm8k",
    "humaneval": "humaneval",
}
"""Where a domain's item ids are looked up."""

POLICY_FAILURES = frozenset({"error", "timeout"})
"""Query statuses that grade as a wrong answer (the plan's LLMs failed or ran out of
time), unless a call failed because its endpoint was unreachable
(:func:`infrastructure_failure`); any other failure (``no_worker``, ``internal``, ...) is
the runtime's, not the policy's, and its query is not an episode."""


INFRASTRUCTURE_KINDS = ("connection", "circuit_open")
"""LLM error kinds that say the endpoint could not be reached (refused, reset, DNS, or a
breaker opened by such failures): the runtime's failure, not the plan's."""
_INFRASTRUCTURE = re.compile(
    rf"(?:^|: )(?:{'|'.join(INFRASTRUCTURE_KINDS)})(?: \(HTTP \d+\))?: "
)  # how an LLMError reads in a failure line: "<node>: <slot>: <model>: connection: ..."


def unreachable_line(lines: Iterable[str]) -> str | None:
    """The first of a query's failure lines that says an endpoint was unreachable."""
    return next((line for line in lines if _INFRASTRUCTURE.search(line)), None)


def infrastructure_failure(query: QueryDone) -> str | None:
    """The failure line of a failed query that says an endpoint was unreachable, if any."""
    if query.status == "ok":
        return None
    return unreachable_line((*query.failures, query.error or ""))


class Rejected(Exception):
    """A query that cannot become an episode; ``code`` names why (it is counted by it)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ItemIndex:
    """Dataset items by domain and id, each dataset loaded once on first use (thread-safe)."""

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.data_dir = data_dir
        self._items: dict[str, dict[str, Item]] = {}
        self._lock = threading.Lock()

    def get(self, domain: str, item_id: str) -> Item:
        """The item; :class:`Rejected` ``unknown_item`` (or ``unscored_item`` for an MMLU-Redux
        question its curators marked wrong: its gold is not trusted)."""
        dataset = DATASET_OF_DOMAIN.get(domain)
        if dataset is None:
            raise Rejected("unknown_item", f"item {item_id!r}: domain {domain!r} has no dataset")
        with self._lock:
            items = self._items.get(dataset)
            if items is None:
                try:
                    loaded = datasets.load(dataset, self.data_dir, include_unscored=True)
                except datasets.DatasetError as exc:
                    raise Rejected("unknown_item", f"item {item_id!r}: {exc}") from None
                items = self._items[dataset] = {item.id: item for item in loaded}
        item = items.get(item_id)
        if item is None:
            raise Rejected("unknown_item", f"no item {item_id!r} in {dataset}")
        if not datasets.is_scored(item):
            raise Rejected("unscored_item", f"item {item_id!r} is marked unscored in {dataset}")
        return item


async def _final_correct(
    item: Item, text: str | None, answer: str | None, sandbox: Sandbox
) -> bool:
    if text:
        if item.domain == "humaneval":
            return (await grade_humaneval(item, text, sandbox)).correct
        if item.domain == "math":  # may call sympy: not on the loop
            return (await asyncio.to_thread(_grade_text, item, text)).correct
        return (await agrade(item, text)).correct
    return await _key_correct(item, answer, sandbox)


def _grade_text(item: Item, text: str) -> Grade:
    return grade(item, text)


async def _key_correct(item: Item, key: str | None, sandbox: Sandbox) -> bool:
    """A parsed answer key (what ``extract_answer`` made of a reply) against the gold."""
    if not key:
        return False
    if item.domain == "mmlu":
        return key == item.answer
    if item.domain == "gsm8k":
        return numbers_equal(key, item.answer)
    if item.domain == "math":
        return (await asyncio.to_thread(math_equivalent, key, item.answer)).equal
    if item.domain == "humaneval":
        return (await grade_humaneval(item, key, sandbox)).correct
    return False


async def grade_episode(
    assembled: Assembled,
    config: HieraConfig,
    layout: SlotLayout,
    items: ItemIndex,
    sandbox: Sandbox,
) -> tuple[Episode, Rejected | None]:
    """The episode of one assembled query, and the item error that left it ungraded, if any
    (``unknown_item``, ``unscored_item``: the episode is then kept without ground truth).

    :class:`Rejected` when the query is no episode at all: ``no_plan`` (it failed before
    it was planned), ``runtime_failure`` (see :data:`POLICY_FAILURES`) or
    ``infrastructure_failure`` (an LLM endpoint was unreachable: :func:`infrastructure_failure`).
    """
    query = assembled.query
    if query.assignment is None:
        raise Rejected("no_plan", f"query {query.query_id} failed before planning ({query.status})")
    if query.status != "ok" and query.status not in POLICY_FAILURES:
        raise Rejected("runtime_failure", f"query {query.query_id} failed: {query.status}")
    unreachable = infrastructure_failure(query)
    if unreachable is not None:  # not a wrong answer of the plan: no reward from it
        raise Rejected(
            "infrastructure_failure",
            f"query {query.query_id} failed ({query.status}): an endpoint was unreachable "
            f"({unreachable})",
        )
    domain = query.domain or config.domain
    item: Item | None = None
    item_error: Rejected | None = None
    if query.item_id is not None:
        try:
            item = await asyncio.to_thread(items.get, domain, query.item_id)
        except Rejected as exc:
            item_error = exc
    record = query.assignment
    nodes: dict[str, NodeOutcome] = {}
    for name in layout.nodes:
        spec = config.supernodes[name]
        ran = record.synthesizers.get(name, spec.synthesizer) != SKIP
        event = assembled.nodes.get(name)
        answerless = spec.role in layout.answerless or bool(event and event.answerless)
        answer = event.answer if event is not None and event.status == "ok" else None
        correct: bool | None = None
        if ran and item is not None and not answerless:
            correct = await _key_correct(item, answer, sandbox)
        nodes[name] = NodeOutcome(
            node=name,
            role=spec.role,
            ran=ran,
            answer=answer if ran else None,
            correct=correct,
            cost_usd=event.cost_usd if event is not None and ran else 0.0,
            answerless=answerless,
        )
    final: bool | None = None
    if item is not None:
        final = query.status == "ok" and await _final_correct(
            item, query.text, query.answer, sandbox
        )
    logps = tuple(query.log_probs) if query.log_probs is not None else None
    episode = Episode(
        query_id=query.query_id,
        item_id=query.item_id,
        domain=domain,
        config_name=config.name,
        config_version=query.config_version,
        policy_version=query.policy_version,
        query_text=query.task_text or "",
        assignment=SlotAssignment(
            proposers={n: tuple(p) for n, p in record.proposers.items()},
            synthesizers=dict(record.synthesizers),
            decision=record.decision,
        ),
        nodes=nodes,
        final_correct=final,
        total_cost_usd=query.cost_usd,
        explore=query.sampled,
        temperature=query.temperature,
        slot_log_probs=logps if logps is not None and len(logps) == len(layout.slots) else None,
        query_embedding=query.query_embedding,
        embedder=query.embedder,
    )
    return episode, item_error


def with_feedback(episode: Episode, score: float) -> Episode:
    """``episode`` graded by a feedback score (>= 0.5: the final answer was right).

    Feedback judges only the final answer, so its supernodes are marked as having no
    answer of their own: the rewards then give each of them ``R`` (α = 0).
    """
    nodes = {
        name: replace(node, correct=None, answerless=True) for name, node in episode.nodes.items()
    }
    return replace(episode, final_correct=score >= 0.5, nodes=nodes)
