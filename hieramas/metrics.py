"""Prometheus metrics of one process, defined once, served on ``/metrics``.

Two sources, both kept off the query path:

* **Trace events.** Every event a process emits already carries what a dashboard wants
  (outcome, latency, model, tokens, cost).  :class:`~hieramas.traces.TraceEmitter` hands
  each published batch to :func:`observe`, on its background pump, after the linger: the
  handlers that run a query pay nothing more.  Nothing is observed until
  :func:`serve_metrics` has been called.
* **Counters read at scrape time.** Each component keeps a ``counters`` Counter (and the
  LLM client its per-endpoint figures); the objects that own them register once with
  :func:`track` (a weak reference) and :class:`_StateCollector` reads them when Prometheus
  scrapes, so nothing is counted twice.

Names follow Prometheus conventions: ``hieramas_`` prefix, a unit suffix, ``_total`` on
counters, and labels from bounded sets only (outcome, error code, role, model and
endpoint names from the config) — never a query id.
"""

from __future__ import annotations

import bisect
import collections
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from hieramas.wire.events import DecisionRun, Event, LlmCall, QueryDone, SupernodeRun

__all__ = [
    "REGISTRY",
    "UNIT_SUFFIXES",
    "ServedCounts",
    "enabled",
    "observe",
    "serve_metrics",
    "track",
]

log = structlog.get_logger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # CPU seconds, memory, open fds of this process

# What a gauge or histogram name may end with (counters end with ``_total``).
UNIT_SUFFIXES = (
    "_seconds",
    "_bytes",
    "_usd",
    "_tokens",
    "_messages",
    "_queries",
    "_calls",
    "_ratio",
    "_reward",
    "_version",
    "_state",
    "_info",
    "_sequence",
)

# Latencies from a cached call (ms) to a slow multi-round query (minutes).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _Histogram:
    """Bucket counts and sum of one label set: a bisect and three adds per observation
    (prometheus_client's own child takes a lock and a label lookup; this path runs for
    every event a process emits)."""

    __slots__ = ("buckets", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(_LATENCY_BUCKETS) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(_LATENCY_BUCKETS, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, n in zip((*map(str, _LATENCY_BUCKETS), "+Inf"), list(self.buckets), strict=True):
            total += n
            out.append((bound, float(total)))
        return out


class _LlmFigures:
    __slots__ = ("completion_tokens", "cost_usd", "latency", "prompt_tokens")

    def __init__(self) -> None:
        self.latency = _Histogram()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0


# What the trace events said, by label values; written on the emitter's loop, read by a scrape.
_llm: dict[tuple[str, str, str], _LlmFigures] = {}  # (model, outcome, error_kind)
_nodes: dict[tuple[str, str], _Histogram] = {}  # (role, status)
_queries: dict[str, _Histogram] = {}  # outcome
_query_cost = [0.0]

ENV_ADDR = "HIERAMAS_METRICS_ADDR"  # the interface /metrics binds (default 127.0.0.1)

_on = False
_sources: dict[str, weakref.WeakSet[Any]] = {}
_sources_lock = threading.Lock()


class ServedCounts:
    """What an LLM server (the emulator) served: requests by (model, HTTP status), tokens
    by (model, kind).  Bumped on its loop, read by the scrape."""

    def __init__(self) -> None:
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()
        self.tokens: collections.Counter[tuple[str, str]] = collections.Counter()

    def count(self, model: str, usage: Any) -> None:
        """One completion served for ``model``, with its OpenAI ``usage`` block."""
        self.requests[model, 200] += 1
        if isinstance(usage, dict):
            self.tokens[model, "prompt"] += int(usage.get("prompt_tokens") or 0)
            self.tokens[model, "completion"] += int(usage.get("completion_tokens") or 0)


def enabled() -> bool:
    """Whether this process serves metrics (events are observed only then)."""
    return _on


def track(kind: str, obj: Any) -> None:
    """Let the scrape read ``obj``'s state (weakly held; ``kind`` says how to read it:
    ``bus``, ``traces``, ``gateway``, ``llm``, ``learner``, ``planner``, ``emulator``,
    ``exporter``)."""
    with _sources_lock:
        _sources.setdefault(kind, weakref.WeakSet()).add(obj)


def _tracked(kind: str) -> list[Any]:
    with _sources_lock:
        return list(_sources.get(kind, ()))


def observe(events: Iterable[Event]) -> None:
    """Record a batch of trace events (called by the trace emitter's pump)."""
    for event in events:
        if isinstance(event, LlmCall):
            key = (event.model, event.outcome, event.error_kind or "")
            figures = _llm.get(key)
            if figures is None:
                figures = _llm[key] = _LlmFigures()
            figures.latency.observe(event.latency_s)
            figures.prompt_tokens += event.prompt_tokens
            figures.completion_tokens += event.completion_tokens
            figures.cost_usd += event.cost_usd
        elif isinstance(event, SupernodeRun | DecisionRun):
            node = _nodes.get((event.role, event.status))
            if node is None:
                node = _nodes[event.role, event.status] = _Histogram()
            node.observe(event.latency_s)
        elif isinstance(event, QueryDone):
            query = _queries.get(event.status)
            if query is None:
                query = _queries[event.status] = _Histogram()
            query.observe(event.latency_s)
            _query_cost[0] += event.cost_usd


def _histograms(name: str, help_: str, labels: list[str], series: Any) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, help_, labels=labels)
    for values, hist in _snapshot(series):
        values = values if isinstance(values, tuple) else (values,)
        family.add_metric(list(values), hist.cumulative(), hist.sum)
    return family


def _event_families() -> Iterator[Metric]:
    """The families derived from trace events."""
    yield _histograms(
        "hieramas_query_duration_seconds",
        "Wall time of a query, from its arrival at the gateway to its answer.",
        ["outcome"],
        _queries,
    )
    queries = CounterMetricFamily(
        "hieramas_queries", "Queries answered, by outcome.", labels=["outcome"]
    )
    for outcome, hist in _snapshot(_queries):
        queries.add_metric([outcome], float(sum(hist.buckets)))
    yield queries
    cost = CounterMetricFamily("hieramas_query_cost_usd", "Cost of the answered queries (USD).")
    cost.add_metric([], _query_cost[0])
    yield cost
    yield _histograms(
        "hieramas_supernode_duration_seconds",
        "Wall time of one supernode (or the decision node) in one query.",
        ["role", "status"],
        _nodes,
    )
    llm = _snapshot(_llm)
    latency = HistogramMetricFamily(
        "hieramas_llm_call_duration_seconds",
        "Wall time of one LLM call, retries included.",
        labels=["model", "outcome"],
    )
    merged: dict[tuple[str, str], list[Any]] = {}
    for (model, outcome, _kind), f in llm:  # error kinds merged: the histogram has no such label
        cum = f.latency.cumulative()
        held = merged.setdefault((model, outcome), [[0.0] * len(cum), 0.0])
        held[0] = [a + b for a, (_, b) in zip(held[0], cum, strict=True)]
        held[1] += f.latency.sum
    bounds = [b for b, _ in _Histogram().cumulative()]
    for (model, outcome), (counts, total) in sorted(merged.items()):
        latency.add_metric([model, outcome], list(zip(bounds, counts, strict=True)), total)
    yield latency
    calls = CounterMetricFamily(
        "hieramas_llm_calls",
        "LLM calls by model, outcome and error kind ('' when ok).",
        labels=["model", "outcome", "error_kind"],
    )
    tokens: dict[tuple[str, str], float] = {}
    costs: dict[str, float] = {}
    for (model, outcome, kind), f in llm:
        calls.add_metric([model, outcome, kind], float(sum(f.latency.buckets)))
        tokens[model, "prompt"] = tokens.get((model, "prompt"), 0) + f.prompt_tokens
        tokens[model, "completion"] = tokens.get((model, "completion"), 0) + f.completion_tokens
        costs[model] = costs.get(model, 0.0) + f.cost_usd
    yield calls
    family = CounterMetricFamily(
        "hieramas_llm_tokens",
        "Tokens by model and kind (prompt, completion).",
        labels=["model", "kind"],
    )
    for (model, kind), n in sorted(tokens.items()):
        family.add_metric([model, kind], n)
    yield family
    family = CounterMetricFamily(
        "hieramas_llm_cost_usd", "LLM cost by model (USD).", labels=["model"]
    )
    for model, usd in sorted(costs.items()):
        family.add_metric([model], usd)
    yield family


def _snapshot(counter: Any) -> list[tuple[Any, Any]]:
    """The items of a Counter another thread may be changing."""
    for _ in range(5):
        try:
            return list(counter.items())
        except RuntimeError:  # changed size while copied: try again
            continue
    return []


def _read_metrics(client: Any) -> dict[str, Any]:
    """An LLM client's per-endpoint figures, read while its loop may add an endpoint."""
    for _ in range(5):
        try:
            figures: dict[str, Any] = client.metrics()
            return figures
        except RuntimeError:  # its endpoint dict changed size while read: try again
            continue
    return {}


def _sum_counters(objs: Sequence[Any]) -> dict[str, float]:
    total: dict[str, float] = {}
    for obj in objs:
        for key, value in _snapshot(obj.counters):
            total[key] = total.get(key, 0) + value
    return total


class _StateCollector(Collector):
    """Reads the tracked components' own counters and state when Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        yield from _event_families()
        yield from self._counters()
        yield from self._traces()
        yield from self._gateways()
        yield from self._llm()
        yield from self._learner()
        yield from self._emulator()
        yield from self._exporter()

    def _counters(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "hieramas_component_events",
            "Every entry of each component's own counters (rejections, retries, failovers...).",
            labels=["component", "event"],
        )
        failures = CounterMetricFamily(
            "hieramas_query_failures", "Failed queries by error code.", labels=["code"]
        )
        rejected = CounterMetricFamily(
            "hieramas_rejected_messages",
            "Messages rejected at the edge, by component and code.",
            labels=["component", "code"],
        )
        for component in ("bus", "learner", "planner"):
            for key, value in sorted(_sum_counters(_tracked(component)).items()):
                events.add_metric([component, key], value)
                if key.startswith("gateway.failed."):
                    failures.add_metric([key.removeprefix("gateway.failed.")], value)
                elif key.startswith("rejected.") or key.startswith("rejected_"):
                    rejected.add_metric([component, key[len("rejected.") :]], value)
        yield from (events, failures, rejected)

    def _traces(self) -> Iterator[Metric]:
        totals = _sum_counters(_tracked("traces"))
        for what, help_ in (
            ("dropped", "Trace events dropped because the emitter's queue was full."),
            ("published", "Trace events published to the stream."),
            ("failed", "Trace events whose publication failed."),
        ):
            family = CounterMetricFamily(f"hieramas_trace_events_{what}", help_)
            family.add_metric([], totals.get(what, 0))
            yield family

    def _gateways(self) -> Iterator[Metric]:
        gateways = _tracked("gateway")
        if gateways:
            family = GaugeMetricFamily(
                "hieramas_queries_in_flight_queries", "Queries the gateway is running now."
            )
            family.add_metric([], sum(len(g.runs) - g.vote_runs for g in gateways))
            yield family

    def _llm(self) -> Iterator[Metric]:
        clients = _tracked("llm")
        if not clients:
            return
        calls = CounterMetricFamily(
            "hieramas_llm_endpoint_calls", "Calls per endpoint.", labels=["endpoint"]
        )
        attempts = CounterMetricFamily(
            "hieramas_llm_endpoint_attempts", "HTTP attempts per endpoint.", labels=["endpoint"]
        )
        retries = CounterMetricFamily(
            "hieramas_llm_endpoint_retries", "Retried attempts per endpoint.", labels=["endpoint"]
        )
        cache_hits = CounterMetricFamily(
            "hieramas_llm_endpoint_cache_hits", "Calls answered by the cache.", labels=["endpoint"]
        )
        errors = CounterMetricFamily(
            "hieramas_llm_endpoint_errors",
            "Failed calls per endpoint and error kind.",
            labels=["endpoint", "kind"],
        )
        opened = CounterMetricFamily(
            "hieramas_llm_breaker_opened",
            "Times the endpoint's breaker opened.",
            labels=["endpoint"],
        )
        in_flight = GaugeMetricFamily(
            "hieramas_llm_endpoint_in_flight_calls", "Calls running now.", labels=["endpoint"]
        )
        state = GaugeMetricFamily(
            "hieramas_llm_breaker_state",
            "1 for the breaker's current state (closed, open, half_open), 0 for the others.",
            labels=["endpoint", "state"],
        )
        for client in clients:
            for endpoint, m in _read_metrics(client).items():
                calls.add_metric([endpoint], m["calls"])
                attempts.add_metric([endpoint], m["attempts"])
                retries.add_metric([endpoint], m["retries"])
                cache_hits.add_metric([endpoint], m["cache_hits"])
                in_flight.add_metric([endpoint], m["in_flight"])
                opened.add_metric([endpoint], m["breaker_opened"])
                for kind, n in sorted(m["errors"].items()):
                    errors.add_metric([endpoint, kind], n)
                for s in ("closed", "open", "half_open"):
                    state.add_metric([endpoint, s], 1.0 if m["breaker"] == s else 0.0)
        yield from (calls, attempts, retries, cache_hits, errors, opened, in_flight, state)

    def _learner(self) -> Iterator[Metric]:
        for service in _tracked("learner")[:1]:  # one learner per process
            row = service.history[-1] if service.history else {}
            for name, key, help_ in (
                ("hieramas_learner_reward", "mean_reward", "Mean reward of the last update."),
                ("hieramas_learner_accuracy_ratio", "accuracy", "Accuracy of the last update."),
                (
                    "hieramas_learner_eval_accuracy_ratio",
                    "eval_accuracy",
                    "Accuracy of the greedy (eval) queries since the update before.",
                ),
            ):
                value = row.get(key)
                if isinstance(value, int | float):
                    family = GaugeMetricFamily(name, help_)
                    family.add_metric([], float(value))
                    yield family
            lineage = service.lineage
            if lineage is not None and lineage.heads:
                family = GaugeMetricFamily(
                    "hieramas_learner_policy_version",
                    "The policy version the learner published last.",
                )
                family.add_metric([], float(lineage.heads[-1]))
                yield family
            updates = CounterMetricFamily("hieramas_learner_updates", "Policy updates published.")
            updates.add_metric([], len(service.history))
            yield updates
            lag = _consumer_lag(service)
            if lag is not None:
                family = GaugeMetricFamily(
                    "hieramas_learner_consumer_lag_messages",
                    "Trace stream messages the learner has not consumed yet.",
                )
                family.add_metric([], lag)
                yield family

    def _emulator(self) -> Iterator[Metric]:
        stats = _tracked("emulator")
        if not stats:
            return
        requests = CounterMetricFamily(
            "hieramas_emulator_requests",
            "Chat completions served, by model and HTTP status.",
            labels=["model", "status"],
        )
        tokens = CounterMetricFamily(
            "hieramas_emulator_tokens",
            "Tokens served, by model and kind.",
            labels=["model", "kind"],
        )
        for s in stats:
            for (model, status), n in sorted(_snapshot(s.requests)):
                requests.add_metric([model, str(status)], n)
            for (model, kind), n in sorted(_snapshot(s.tokens)):
                tokens.add_metric([model, kind], n)
        yield from (requests, tokens)

    def _exporter(self) -> Iterator[Metric]:
        exporters = _tracked("exporter")  # hieramas traces export (one per process)
        if not exporters:
            return
        for name, help_, value in (
            (
                "hieramas_export_spans",
                "Spans the OTLP backend accepted.",
                sum(e.stats.spans for e in exporters),
            ),
            (
                "hieramas_export_failures",
                "Span exports that failed or were refused (each is sent again, with backoff).",
                sum(e.stats.failed_exports for e in exporters),
            ),
            (
                "hieramas_export_events_skipped",
                "Trace events skipped: unreadable, or no span can hold them.",
                sum(e.read.skipped + e.counters["unconvertible"] for e in exporters),
            ),
        ):
            family = CounterMetricFamily(name, help_)
            family.add_metric([], value)
            yield family
        acked = GaugeMetricFamily(
            "hieramas_export_acked_sequence",
            "Trace stream sequence of the last message acknowledged (its spans were accepted).",
        )
        acked.add_metric([], max(e.acked_seq for e in exporters))
        yield acked
        lags = [e.lag for e in exporters if e.lag is not None]
        if lags:
            lag = GaugeMetricFamily(
                "hieramas_export_consumer_lag_messages",
                "Trace stream messages the exporter's consumer has not acknowledged yet "
                "(as of its last acknowledgement).",
            )
            lag.add_metric([], sum(lags))
            yield lag


def _consumer_lag(service: Any) -> float | None:
    """The stream's last sequence minus the last one the learner has taken (None: unknown)."""
    bus = service.bus
    try:
        position = bus.call(service.consumer.position(), timeout=1.0)
    except Exception:  # the stream is not there yet, or NATS is away: no sample
        return None
    return float(max(0, position.last_seq - int(service._seq)))


REGISTRY.register(_StateCollector())

_servers: list[Any] = []


def serve_metrics(port: int, addr: str | None = None) -> int:
    """Serve ``/metrics`` on ``addr:port`` (``port`` 0: a free one) in a daemon thread and
    start observing trace events; returns the port.  ``addr`` defaults to
    ``$HIERAMAS_METRICS_ADDR`` or 127.0.0.1 (a scraper on another host needs 0.0.0.0)."""
    import os

    global _on
    host = addr or os.environ.get(ENV_ADDR) or "127.0.0.1"
    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    _servers.append(server)
    _on = True
    bound = int(server.server_port)
    log.info("metrics.serving", url=f"http://{host}:{bound}/metrics")
    return bound
