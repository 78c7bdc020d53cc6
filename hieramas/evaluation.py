"""Run benchmark items through a running HieraMAS and grade the answers.

The same runner serves ``hieramas demo`` and the benchmark command: items
go through the real runtime (gateway, actors, LLM endpoints) with bounded
concurrency, each reply is graded deterministically, and the report carries
accuracy with a 95% Wilson interval, cost, tokens and latency percentiles,
and whether the LLMs were emulated.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hieramas.controller.client import HieraClient
from hieramas.tasks.datasets import Item
from hieramas.tasks.graders import Grade, agrade
from hieramas.tasks.sandbox import Sandbox

__all__ = ["EvalReport", "ItemResult", "evaluate", "wilson_interval"]


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One item's outcome: the runtime's status and the grader's verdict."""

    item_id: str
    status: str
    outcome: str  # correct | wrong | unparseable | error
    predicted: str | None
    gold: str
    cost_usd: float
    tokens: int
    latency_s: float
    config_version: int
    error: str | None = None
    policy_version: int | None = None
    """The policy version that planned it (``None``: not a learned plan)."""


@dataclass
class EvalReport:
    """Aggregate figures over the evaluated items."""

    method: str
    dataset: str
    results: list[ItemResult] = field(default_factory=list)
    emulated: bool = False
    split_seed: int | None = None

    @property
    def n(self) -> int:
        return len(self.results)

    @property
    def correct(self) -> int:
        return sum(r.outcome == "correct" for r in self.results)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (accuracy with CI, cost, tokens, latency, labels)."""
        low, high = wilson_interval(self.correct, self.n)
        latencies = sorted(r.latency_s for r in self.results) or [0.0]
        return {
            "method": self.method,
            "dataset": self.dataset,
            "n": self.n,
            "accuracy": self.accuracy,
            "ci95": [low, high],
            "errors": sum(r.outcome == "error" for r in self.results),
            "unparseable": sum(r.outcome == "unparseable" for r in self.results),
            "cost_per_query_usd": statistics.fmean(r.cost_usd for r in self.results)
            if self.results
            else 0.0,
            "tokens_per_query": statistics.fmean(r.tokens for r in self.results)
            if self.results
            else 0.0,
            "latency_p50_s": _percentile(latencies, 0.5),
            "latency_p95_s": _percentile(latencies, 0.95),
            "emulated": self.emulated,
            "split_seed": self.split_seed,
        }


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def evaluate(
    client: HieraClient,
    items: Sequence[Item],
    *,
    method: str = "hieramas",
    dataset: str = "",
    concurrency: int = 8,
    timeout_s: float = 120.0,
    sandbox: Sandbox | None = None,
    split_seed: int | None = None,
    on_result: Callable[[ItemResult], None] | None = None,
) -> EvalReport:
    """Ask every item through ``client`` (at most ``concurrency`` at once) and grade it."""
    report = EvalReport(method=method, dataset=dataset, split_seed=split_seed)
    gate = asyncio.Semaphore(concurrency)

    async def one(item: Item) -> None:
        async with gate:
            try:
                result = await client.ask(
                    item.question, domain=item.domain, timeout_s=timeout_s, item_id=item.id
                )
            except Exception as exc:  # the bus itself failed: an explicit per-item error
                result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        report.emulated = report.emulated or bool(result.get("emulated"))
        outcome: str = "error"
        predicted: str | None = None
        if result.get("status") == "ok":
            verdict: Grade = await agrade(item, str(result.get("text") or ""), sandbox=sandbox)
            outcome, predicted = verdict.outcome, verdict.predicted
        row = ItemResult(
            item_id=item.id,
            status=str(result.get("status")),
            outcome=outcome,
            predicted=predicted,
            gold=item.answer if item.domain != "humaneval" else "(tests)",
            cost_usd=float(result.get("cost_usd") or 0.0),
            tokens=int(result.get("prompt_tokens") or 0)
            + int(result.get("completion_tokens") or 0),
            latency_s=float(result.get("latency_s") or 0.0),
            config_version=int(result.get("config_version") or 0),
            error=result.get("error"),
            policy_version=result.get("policy_version"),
        )
        report.results.append(row)
        if on_result is not None:
            on_result(row)

    await asyncio.gather(*(one(item) for item in items))
    order = {item.id: i for i, item in enumerate(items)}
    report.results.sort(key=lambda r: order[r.item_id])
    return report
