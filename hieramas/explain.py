"""``hieramas explain QUERY_ID``: what one query did, read back from the trace stream.

It shows the query's plan and DAG, every node's LLMs, answers, costs and timings, what
failed, and a Gantt-style timeline of the LLM calls on the critical path (the chain of
calls the query's latency waited on), or all of it as JSON (``--json``).

The trace stream batches events of many queries into each message, so the query's events
are found by reading back from the newest message in growing windows until the window
reaches earlier than the query began (or the stream's start).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hieramas.bus import Bus
from hieramas.traces import TRACE_STREAM, ReadStats, replay
from hieramas.wire import Subjects
from hieramas.wire.events import DecisionRun, Event, LlmCall, QueryDone, SupernodeRun

__all__ = ["Explanation", "critical_path", "explain", "explain_events", "find_query_events"]

out = Console()
err = Console(stderr=True)

_SLACK_S = 5.0  # a window reaching this far before the query's start holds all its events
_FIRST_WINDOW = 64  # messages
_BAR = 48  # characters of the timeline's bars


async def find_query_events(bus: Bus, query_id: str, stats: ReadStats | None = None) -> list[Event]:
    """The trace events of ``query_id`` in the stream (empty if it has none)."""
    stats = stats if stats is not None else ReadStats()
    info = await bus.js.stream_info(TRACE_STREAM)
    first, last = int(info.state.first_seq), int(info.state.last_seq)
    window = _FIRST_WINDOW
    while last:
        start = max(last - window + 1, first, 1)
        read = ReadStats()
        events = await replay(bus, Subjects(), start_seq=start, idle_s=0.5, stats=read)
        mine = [e for e in events if e.query_id == query_id]
        done = next((e for e in mine if isinstance(e, QueryDone)), None)
        if start <= first or (done is not None and _reaches_before(events, done)):
            stats.add(read)
            return mine
        window *= 4
    return []


def _reaches_before(events: Sequence[Event], done: QueryDone) -> bool:
    began = done.started if done.started is not None else done.finished - done.latency_s
    times = [t for e in events if (t := _start_of(e)) is not None]
    return bool(times) and min(times) < began - _SLACK_S


def _start_of(event: Event) -> float | None:
    if isinstance(event, LlmCall):
        return event.started
    if isinstance(event, SupernodeRun | DecisionRun):
        return event.started if event.started is not None else event.finished - event.latency_s
    if isinstance(event, QueryDone):
        return event.started if event.started is not None else event.finished - event.latency_s
    return None


@dataclass(frozen=True)
class Explanation:
    """One query's events, sorted out."""

    query_id: str
    query: QueryDone | None
    nodes: list[SupernodeRun]
    decision: DecisionRun | None
    calls: list[LlmCall]
    critical: list[LlmCall]

    def failures(self) -> list[str]:
        """Everything that failed: the query, nodes, the decision, LLM calls."""
        found: list[str] = []
        if self.query is not None and self.query.status != "ok":
            found.append(f"query: {self.query.status}: {self.query.error}")
        for f in self.query.failures if self.query is not None else []:
            found.append(f"query: {f}")
        for n in self.nodes:
            if n.status != "ok":
                found.append(f"node {n.node}: {n.error}")
            found.extend(f"node {n.node}: {f}" for f in n.failures)
        if self.decision is not None:
            if self.decision.status != "ok":
                found.append(f"decision: {self.decision.error}")
            found.extend(f"decision: {f}" for f in self.decision.failures)
        for c in self.calls:
            if c.outcome != "ok":
                found.append(
                    f"call {c.node}/{c.slot} {c.model} (attempt {c.attempt}, worker {c.worker}):"
                    f" {c.error_kind}: {c.error}"
                )
        return list(dict.fromkeys(found))

    def as_dict(self) -> dict[str, Any]:
        """The explanation as plain data (``--json``)."""
        q = self.query
        critical = {c.span_id for c in self.critical}
        return {
            "query_id": self.query_id,
            "query": _plain(q) if q is not None else None,
            "plan": {
                "assignment": _plain(q.assignment) if q is not None and q.assignment else None,
                "edges": [list(e) for e in q.edges] if q is not None else [],
                "skipped_nodes": list(q.skipped_nodes) if q is not None else [],
            },
            "nodes": [_plain(n) for n in self.nodes],
            "decision": _plain(self.decision) if self.decision is not None else None,
            "calls": [{**_plain(c), "critical": c.span_id in critical} for c in self.calls],
            "critical_path": [f"{c.node}/{c.slot}" for c in self.critical],
            "failures": self.failures(),
        }


def _plain(record: Any) -> Any:
    import msgspec

    return msgspec.to_builtins(record)


def explain_events(query_id: str, events: Sequence[Event]) -> Explanation:
    """Sort ``query_id``'s events into an :class:`Explanation`."""
    mine = [e for e in events if e.query_id == query_id]
    query = next((e for e in mine if isinstance(e, QueryDone)), None)
    nodes = sorted((e for e in mine if isinstance(e, SupernodeRun)), key=lambda n: n.finished)
    decision = next((e for e in mine if isinstance(e, DecisionRun)), None)
    calls = sorted((e for e in mine if isinstance(e, LlmCall)), key=lambda c: c.started)
    edges = list(query.edges) if query is not None else []
    return Explanation(
        query_id=query_id,
        query=query,
        nodes=nodes,
        decision=decision,
        calls=calls,
        critical=critical_path(nodes, calls, edges),
    )


def critical_path(
    nodes: Sequence[SupernodeRun], calls: Sequence[LlmCall], edges: Sequence[tuple[str, str]]
) -> list[LlmCall]:
    """The calls the query's latency waited on, in time order.

    The decision waits for every supernode, so the path ends at the supernode that finished
    last; a supernode waits for its predecessors (the edges), so the path goes back through
    the predecessor that finished last.  Within a node the synthesizer waits for its
    proposers: the slowest proposer call, then the synthesizer call.  A slot sent again
    counts with its last attempt.
    """
    finished = {n.node: n.finished for n in nodes}
    preds: dict[str, list[str]] = {}
    for src, dst in edges:
        preds.setdefault(dst, []).append(src)
    last: dict[tuple[str, str], LlmCall] = {}
    for c in calls:  # the last attempt of each slot
        key = (c.node, c.slot)
        if key not in last or c.attempt >= last[key].attempt:
            last[key] = c
    path: list[str] = []
    current = max(finished, key=lambda n: finished[n]) if finished else None
    while current is not None and current not in path:
        path.append(current)
        ready = [p for p in preds.get(current, []) if p in finished]
        current = max(ready, key=lambda p: finished[p]) if ready else None
    chosen: list[LlmCall] = []
    for node in reversed(path):
        own = [c for (n, _), c in last.items() if n == node]
        proposers = [c for c in own if c.slot.startswith("p")]
        if proposers:
            chosen.append(max(proposers, key=lambda c: c.finished))
        chosen.extend(c for c in own if c.slot == "synth")
    chosen.extend(c for (n, _), c in last.items() if n == "decision")
    return sorted(chosen, key=lambda c: c.started)


# -- rendering --------------------------------------------------------------------------


def render(expl: Explanation, console: Console) -> None:
    """Print ``expl`` for a person."""
    q = expl.query
    if q is None:
        console.print(
            f"[yellow]query {expl.query_id}: no 'query' event (still running, or its end was "
            "not traced); what its nodes traced follows[/yellow]"
        )
    else:
        label = "  [EMULATED LLMs]" if q.emulated else ""
        console.print(
            f"[bold]query {q.query_id}[/bold]  trace {q.trace_id}  status [bold]{q.status}"
            f"[/bold]  answer {q.answer!r}  decided by {q.decided_by}{label}",
            highlight=False,
        )
        console.print(
            f"cost ${q.cost_usd:.6f}  tokens {q.prompt_tokens}+{q.completion_tokens}  "
            f"latency {q.latency_s:.3f}s  config v{q.config_version}  planner {q.planner}"
            f"{f' policy v{q.policy_version}' if q.policy_version is not None else ''}"
            f"  domain {q.domain}{f'  item {q.item_id}' if q.item_id else ''}",
            highlight=False,
        )
    console.print(_plan_table(expl))
    if q is not None:
        dag = ", ".join(f"{a} -> {b}" for a, b in q.edges) or "none (supernodes in parallel)"
        console.print(f"DAG edges: {dag}; every supernode feeds the decision", highlight=False)
        if q.skipped_nodes:
            console.print(f"skipped nodes: {', '.join(q.skipped_nodes)}", highlight=False)
    console.print(_nodes_table(expl))
    console.print(_calls_table(expl))
    failures = expl.failures()
    if failures:
        console.print("[bold red]what failed[/bold red]")
        for f in failures:
            console.print(f"  {f}", highlight=False, markup=False)
    else:
        console.print("nothing failed")
    console.print(_timeline(expl))


def _plan_table(expl: Explanation) -> Table:
    table = Table("node", "role", "proposers", "synthesizer", "after", title="plan")
    q = expl.query
    roles = {n.node: n.role for n in expl.nodes}
    preds: dict[str, list[str]] = {}
    for a, b in q.edges if q is not None else []:
        preds.setdefault(b, []).append(a)
    if q is not None and q.assignment is not None:
        for node, synth in q.assignment.synthesizers.items():
            table.add_row(
                node, roles.get(node, ""), ", ".join(q.assignment.proposers.get(node, [])),
                synth, ", ".join(preds.get(node, [])),
            )  # fmt: skip
        table.add_row("decision", "decision", "", q.assignment.decision, "all supernodes")
    else:
        for n in expl.nodes:
            models = ", ".join(m or "skip" for m in n.models.proposers)
            table.add_row(n.node, n.role, models, n.models.synthesizer, "")
    return table


def _nodes_table(expl: Explanation) -> Table:
    table = Table(
        "node", "role", "status", "answer", "cost $", "latency s", "tokens", "worker",
        title="nodes",
    )  # fmt: skip
    runs: list[SupernodeRun | DecisionRun] = [*expl.nodes]
    if expl.decision is not None:
        runs.append(expl.decision)
    for n in runs:
        table.add_row(
            n.node, n.role, n.status, str(n.answer), f"{n.cost_usd:.6f}", f"{n.latency_s:.3f}",
            f"{n.prompt_tokens}+{n.completion_tokens}", n.worker,
        )  # fmt: skip
    return table


def _calls_table(expl: Explanation) -> Table:
    critical = {c.span_id for c in expl.critical}
    table = Table(
        "node", "slot", "LLM", "try", "outcome", "start s", "latency s", "tokens", "cost $",
        "worker", "critical", title="LLM calls",
    )  # fmt: skip
    t0 = _t0(expl)
    for c in expl.calls:
        table.add_row(
            c.node, c.slot, c.model, str(c.attempt),
            c.outcome if c.outcome == "ok" else f"[red]{c.error_kind or 'error'}[/red]",
            f"{c.started - t0:.3f}", f"{c.latency_s:.3f}",
            f"{c.prompt_tokens}+{c.completion_tokens}", f"{c.cost_usd:.6f}", c.worker,
            "*" if c.span_id in critical else "",
        )  # fmt: skip
    return table


def _t0(expl: Explanation) -> float:
    q = expl.query
    if q is not None and q.started is not None:
        return q.started
    starts = [c.started for c in expl.calls]
    return min(starts) if starts else 0.0


def _timeline(expl: Explanation) -> Table:
    """The critical path's calls as bars on the query's time axis."""
    t0 = _t0(expl)
    q = expl.query
    end = max([c.finished for c in expl.calls] + ([q.finished] if q is not None else [t0]))
    span = max(end - t0, 1e-6)
    table = Table(
        "call", "LLM", f"0 .. {span:.3f} s", "start s", "s",
        title="critical path (Gantt)", show_lines=False,
    )  # fmt: skip
    for c in expl.critical:
        begin = min(round((c.started - t0) / span * _BAR), _BAR - 1)
        width = max(1, round((c.finished - c.started) / span * _BAR))
        bar = Text(" " * begin)
        bar.append("█" * min(width, _BAR - begin), style="green" if c.outcome == "ok" else "red")
        table.add_row(
            f"{c.node}/{c.slot}", c.model, bar, f"{c.started - t0:.3f}", f"{c.latency_s:.3f}"
        )
    return table


def explain(
    query_id: Annotated[str, typer.Argument(help="The query id (`hieramas ask` prints it).")],
    nats: Annotated[
        str | None,
        typer.Option("--nats", envvar="HIERAMAS_NATS_URL", help="NATS URL of a running system."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the explanation as JSON.")] = False,
) -> None:
    """Show what query QUERY_ID did: its plan and DAG, each node's LLMs, answers, costs and
    timings, what failed, and a timeline of the calls on its critical path."""
    from hieramas.natsconn import NatsSettings

    if not nats:
        err.print("[red]--nats URL (or HIERAMAS_NATS_URL) is required for this command[/red]")
        raise typer.Exit(2)
    settings = NatsSettings.from_env(nats, name="hieramas-explain")
    bus = Bus(settings)
    try:
        bus.start()
    except Exception as exc:
        err.print(f"[red]cannot connect to NATS at {settings.redacted_url()}: {exc}[/red]")
        raise typer.Exit(2) from None
    stats = ReadStats()
    try:
        events = bus.call(find_query_events(bus, query_id, stats), timeout=None)
    except Exception as exc:  # no stream, no permission: one clear line
        err.print(f"[red]cannot read the trace stream {TRACE_STREAM}: {exc}[/red]")
        raise typer.Exit(2) from None
    finally:
        bus.stop()
    if stats.skipped:
        err.print(f"[yellow]{stats.summary()}[/yellow]", highlight=False)
    if not events:
        err.print(f"[red]no trace events for query {query_id!r} in {TRACE_STREAM}[/red]")
        raise typer.Exit(1)
    expl = explain_events(query_id, events)
    if as_json:
        print(json.dumps(expl.as_dict(), default=str))
        return
    render(expl, out)
