"""Read what a run left on disk into :class:`ReportData` (plain data for the figures).

Recognised sources (:func:`load`):

- a Stage-1 ``hieramas train`` run directory (``driver.json``/``metrics.jsonl``,
  ``summary.json``, ``config.yaml``, ``compare/compare.json``, and for the LLMs per role
  ``greedy-plans.jsonl`` when written, else ``learner/episodes.jsonl``);
- a Stage-2 ``hieramas train --stage 2`` run directory (``candidates.jsonl``,
  ``summary.json``, ``run.json`` naming its Stage-1 run, ``eval.jsonl`` when recorded);
- a ``hieramas compare`` directory (``compare.json``);
- a ``hieramas bench --json`` file;
- a demo directory: ``stage1/`` (a Stage-1 run), ``stage2/`` (a Stage-2 run) and
  ``evaluation.json`` (a list of method summaries: ``method``, ``n``, ``accuracy``,
  ``ci95``, ``cost_per_query_usd``, ``latency_p50_s``, ``latency_p95_s``, ``emulated``).

Any of them may hold a ``trace.jsonl``: trace events (``hieramas.wire.events`` records as
JSON, one a line) of at least one query, drawn as its latency breakdown.

What a source lacks is said in :attr:`ReportData.notes`, never invented.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hieramas.report.analysis import Dag

__all__ = ["ReportData", "SourceError", "load"]

TRACE_FILE = "trace.jsonl"
EVAL_ROWS = "eval.jsonl"
GREEDY_PLANS = "greedy-plans.jsonl"
PSEUDO = ("skip", "vote", "pass")


class SourceError(ValueError):
    """The path is not a run directory, compare directory, bench file or demo directory."""


@dataclass
class ReportData:
    """Everything a report can show, as plain data; empty fields are simply not drawn."""

    source: Path
    kind: str
    title: str
    emulated: bool | None = None
    """True: every figure came from the emulator; False: real models; None: not recorded."""
    dataset: str = ""
    methods: list[dict[str, Any]] = field(default_factory=list)
    """Method summaries (``method``, ``n``, ``accuracy``, ``ci95``, ``cost_per_query_usd``,
    optionally ``latency_p50_s``/``latency_p95_s``, ``edges_mean``)."""
    methods_caption: str = ""
    curves: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)
    """panel -> line -> (iteration, value)."""
    curves_caption: str = ""
    dags: dict[str, list[Dag]] = field(default_factory=dict)
    """method -> the DAG each query ran."""
    dags_caption: str = ""
    config_dag: Dag | None = None
    """The config's fixed DAG, when every query runs the same one."""
    roles: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)
    """label (e.g. a dataset) -> role -> action -> slots."""
    roles_caption: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    """One query's timed calls (see :data:`hieramas.report.figures.Call`)."""
    calls_caption: str = ""
    facts: list[tuple[str, str]] = field(default_factory=list)
    """(name, value) lines of the report's header table."""
    notes: list[str] = field(default_factory=list)


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a JSON-lines file; a torn line (a kill mid-write) is skipped."""
    if not path.exists():
        return
    with path.open() as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                yield row


def _config(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _node_roles(doc: Mapping[str, Any]) -> dict[str, str]:
    return {str(n): str(s.get("role", n)) for n, s in (doc.get("supernodes") or {}).items()}


def _config_dag(doc: Mapping[str, Any]) -> Dag | None:
    nodes = tuple(str(n) for n in doc.get("supernodes") or {})
    edges = doc.get("edges")
    if not nodes or not isinstance(edges, list):
        return None
    return Dag(nodes, frozenset((str(a), str(b)) for a, b in edges))


def _count_assignment(
    out: dict[str, Counter[str]], roles: Mapping[str, str], assignment: Mapping[str, Any]
) -> None:
    """Add one query's proposer and synthesizer choices to ``out[role]``."""
    for node, names in (assignment.get("proposers") or {}).items():
        out.setdefault(roles.get(node, node), Counter()).update(str(n) for n in names)
    for node, name in (assignment.get("synthesizers") or {}).items():
        out.setdefault(roles.get(node, node), Counter())[str(name)] += 1


def _method_row(name: str, s: Mapping[str, Any]) -> dict[str, Any]:
    """A summary with ``method`` and ``ci95`` as [low, high] (older Stage-2 summaries kept
    only the half-width)."""
    row = {"method": name, **s}
    if "ci95" not in row and "ci95_half" in row:
        half = float(row["ci95_half"])
        acc = float(row["accuracy"])
        row["ci95"] = [max(0.0, acc - half), min(1.0, acc + half)]
    return row


# -- Stage 1 ----------------------------------------------------------------------------


def _is_stage1(path: Path) -> bool:
    return path.is_dir() and (path / "metrics.jsonl").exists() and (path / "driver.json").exists()


def _stage1_curves(data: ReportData, path: Path) -> None:
    reward, acc, cost, version = [], [], [], []
    eval_acc, eval_cost = [], []
    for row in _jsonl(path / "metrics.jsonl"):
        it = float(row.get("iteration", 0))
        if row.get("kind") == "train":
            learner = row.get("learner") or {}
            if learner.get("mean_reward") is not None:
                reward.append((it, float(learner["mean_reward"])))
            if row.get("accuracy") is not None:
                acc.append((it, float(row["accuracy"])))
            if row.get("cost_per_query_usd") is not None:
                cost.append((it, float(row["cost_per_query_usd"])))
            if row.get("version_after") is not None:
                version.append((it, float(row["version_after"])))
        elif row.get("kind") == "eval":
            eval_acc.append((it, float(row["accuracy"])))
            eval_cost.append((it, float(row["cost_per_query_usd"])))
    data.curves = {
        "mean reward (training batch)": {"train": reward},
        "accuracy": {"training batch (sampled)": acc, "validation (greedy)": eval_acc},
        "cost per query (US$)": {
            "training batch (sampled)": cost,
            "validation (greedy)": eval_cost,
        },
        "policy version": {"after the iteration": version},
    }
    data.curves_caption = (
        "Per training iteration (metrics.jsonl): the learner's mean reward on the batch, the "
        "batch's accuracy and cost per query (sampled, exploring), the validation evaluations "
        "(greedy) and the policy version in force after the iteration."
    )


def _stage1(path: Path) -> ReportData:
    run = _json(path / "run.json") if (path / "run.json").exists() else {}
    summary = _json(path / "summary.json") if (path / "summary.json").exists() else {}
    doc = _config(path / "config.yaml")
    dataset = str(summary.get("dataset") or run.get("dataset") or "")
    data = ReportData(path, "stage1", f"Stage-1 training run {path.name}", dataset=dataset)
    data.emulated = summary.get("emulated", None if run.get("local") else True)
    if run.get("local"):
        data.emulated = False
    data.facts = [
        ("dataset", dataset),
        ("reward", str(run.get("reward", summary.get("reward", "")))),
        ("queries", str(summary.get("queries", run.get("queries", "")))),
        ("seed", str(run.get("seed", summary.get("seed", "")))),
    ]
    if summary.get("best"):
        best = summary["best"]
        data.facts.append((
            "best version",
            f"v{best['version']}: accuracy {best['accuracy']:.3f}, "
            f"${best['cost_per_query_usd']:.4g}/query (validation)",
        ))  # fmt: skip
    else:
        data.notes.append("summary.json is missing: the run has not finished.")
    _stage1_curves(data, path)
    compare = path / "compare" / "compare.json"
    if compare.exists():
        _add_compare(data, compare)
    else:
        data.notes.append(
            f"No comparison yet: `hieramas compare {path}` adds accuracy against cost."
        )
    data.config_dag = _config_dag(doc)
    greedy = list(_jsonl(path / GREEDY_PLANS))
    episodes = [] if greedy else list(_jsonl(path / "learner" / "episodes.jsonl"))
    if greedy:
        counts_greedy: dict[str, Counter[str]] = {}
        for row in greedy:
            _count_assignment(counts_greedy, _node_roles(doc), row)
        data.roles[dataset or "run"] = counts_greedy
        data.roles_caption = (
            f"Share of each role's slots (proposers and synthesizer) per action: the best "
            f"version (v{greedy[0].get('policy_version', '?')}) decoding greedily on the first "
            f"{len(greedy)} test items ({GREEDY_PLANS}, scripts/stage1_greedy_plans.py)."
        )
    if episodes:
        late = episodes[-max(1, len(episodes) // 4) :]
        counts: dict[str, Counter[str]] = {}
        roles = _node_roles(doc)
        for ep in late:
            _count_assignment(counts, roles, ep.get("assignment") or {})
        data.roles[dataset or "run"] = counts
        data.roles_caption = (
            f"Share of each role's slots (proposers and synthesizer) per action over the last "
            f"{len(late)} of {len(episodes)} training episodes (sampled while exploring, "
            "learner/episodes.jsonl)."
        )
    _add_trace(data, path)
    return data


# -- compare, bench ---------------------------------------------------------------------


def _add_compare(data: ReportData, path: Path) -> None:
    doc = _json(path)
    data.methods = [dict(s) for s in doc.get("summaries", [])]
    data.methods_caption = (
        f"`hieramas compare` on {doc.get('dataset', '?')} (split seed "
        f"{doc.get('split_seed', '?')}, {path})."
    )
    if doc.get("emulated") is not None and data.emulated is None:
        data.emulated = bool(doc["emulated"])


def _compare(path: Path) -> ReportData:
    doc = _json(path / "compare.json")
    data = ReportData(path, "compare", f"Comparison {path}", dataset=str(doc.get("dataset", "")))
    data.emulated = doc.get("emulated")
    _add_compare(data, path / "compare.json")
    data.facts = [("dataset", data.dataset), ("run", str(doc.get("run_dir", "")))]
    _add_trace(data, path)
    return data


def _bench(path: Path) -> ReportData:
    doc = _json(path)
    if not isinstance(doc, dict) or "summaries" not in doc:
        raise SourceError(f"{path} is not a `hieramas bench --json` file")
    data = ReportData(path, "bench", f"Benchmark {path.name}", dataset=str(doc.get("dataset", "")))
    data.methods = [dict(s) for s in doc["summaries"]]
    flags = {bool(s.get("emulated")) for s in data.methods if "emulated" in s}
    data.emulated = flags.pop() if len(flags) == 1 else None
    if len(flags) > 1:
        data.notes.append("Some methods ran on emulated and some on real models.")
    data.methods_caption = f"`hieramas bench` on {data.dataset} ({path})."
    data.facts = [
        ("dataset", data.dataset),
        ("split seed", str(doc.get("split_seed", ""))),
        ("items graded", str(len(doc.get("items", [])))),
    ]
    if not data.methods:
        data.notes.append("The bench file has no finished method yet.")
    _add_trace(data, path.parent if path.parent != path else path)
    return data


# -- Stage 2 ----------------------------------------------------------------------------


def _is_stage2(path: Path) -> bool:
    return path.is_dir() and (path / "candidates.jsonl").exists()


def _layout(stage1: Path) -> dict[str, Any] | None:
    """The slot layout recorded in the Stage-1 run's ``best.ckpt`` header (no tensors read)."""
    from safetensors import safe_open

    ckpt = stage1 / "best.ckpt"
    if not ckpt.exists():
        return None
    try:
        with safe_open(str(ckpt), framework="numpy") as fh:
            header = json.loads((fh.metadata() or {}).get("hieramas", "{}"))
    except (OSError, ValueError):
        return None
    layout = (header.get("meta") or {}).get("layout")
    return layout if isinstance(layout, dict) else None


def _dag_of(row: Mapping[str, Any]) -> Dag:
    edges = frozenset((str(a), str(b)) for a, b in row.get("edges") or [])
    nodes = row.get("nodes")
    if nodes is None:
        synth = row.get("synthesizers") or {}
        nodes = [n for n, s in synth.items() if s != "skip"] or sorted(
            {n for e in edges for n in e}
        )
    return Dag(tuple(str(n) for n in nodes), edges)


def _stage2(path: Path) -> ReportData:
    run = _json(path / "run.json") if (path / "run.json").exists() else {}
    summary = _json(path / "summary.json") if (path / "summary.json").exists() else {}
    doc = _config(path / "config.yaml")
    dataset = str(summary.get("dataset") or run.get("dataset") or "")
    data = ReportData(path, "stage2", f"Stage-2 run {path.name}", dataset=dataset)
    data.emulated = summary.get("emulated", True)
    data.facts = [
        ("dataset", dataset),
        ("Stage-1 run", str(run.get("stage1", ""))),
        (
            "training queries x candidates",
            f"{run.get('queries', '?')} x {run.get('candidates', '?')}",
        ),
        ("seed", str(run.get("seed", ""))),
    ]
    if summary.get("winner"):
        best = summary["training"][summary["winner"]]
        data.facts.append((
            "classifier",
            f"{summary['winner']} loss: validation per-query AUC {best['auc']:.3f}, top-1 "
            f"{best['top1']:.3f} (random {best['top1_random']:.3f})",
        ))  # fmt: skip
    if summary.get("eval"):
        data.methods = [_method_row(m, s) for m, s in summary["eval"].items()]
        data.methods_caption = (
            f"Held-out test items ({summary.get('eval_items', '?')}) under Stage 1's assignment, "
            "each method choosing the DAG (summary.json)."
        )
    else:
        data.notes.append("summary.json has no evaluation (run with --eval-items).")
    roles = _node_roles(doc)
    evals = list(_jsonl(path / EVAL_ROWS))
    if evals:
        for row in evals:
            data.dags.setdefault(str(row["method"]), []).append(_dag_of(row))
        data.dags_caption = (
            f"The DAG each held-out query ran, per method ({EVAL_ROWS}); density is edges "
            "over n(n-1)/2 of the supernodes that ran."
        )
        first = [row for row in evals if row["method"] == evals[0]["method"]]
        counts: dict[str, Counter[str]] = {}
        for row in first:
            _count_assignment(counts, roles, row)
        data.roles[dataset] = counts
        data.roles_caption = (
            f"Share of each role's slots per action: Stage 1's assignment on the {len(first)} "
            f"held-out queries ({EVAL_ROWS})."
        )
    else:
        data.notes.append(
            f"No {EVAL_ROWS}: this run did not record each held-out query's DAG, so the "
            "selected DAGs are not drawn."
        )
        stage1 = Path(str(run.get("stage1", "")))
        layout = _layout(stage1) if run.get("stage1") else None
        if layout is not None:
            counts = _decode_actions(path / "candidates.jsonl", layout, roles)
            if counts:
                data.roles[dataset] = counts
                data.roles_caption = (
                    "Share of each role's slots per action: the frozen Stage-1 policy's greedy "
                    "assignment on the training queries (candidates.jsonl)."
                )
    _add_trace(data, path)
    return data


def _decode_actions(
    path: Path, layout: Mapping[str, Any], roles: Mapping[str, str]
) -> dict[str, Counter[str]]:
    """Per role, the actions of ``candidates.jsonl``'s rows (decision slot left out)."""
    actions = [str(a) for a in layout["actions"]]
    slots = [(str(s[0]), str(s[1]), str(s[2])) for s in layout["slots"]]
    counts: dict[str, Counter[str]] = {}
    for row in _jsonl(path):
        acts = row.get("actions") or []
        if len(acts) != len(slots):
            continue
        for (node, role, kind), a in zip(slots, acts, strict=True):
            if kind != "decision":
                counts.setdefault(roles.get(node, role), Counter())[actions[int(a)]] += 1
    return counts


# -- demo --------------------------------------------------------------------------------


def _is_demo(path: Path) -> bool:
    return path.is_dir() and (path / "evaluation.json").exists()


def _demo(path: Path) -> ReportData:
    data = ReportData(path, "demo", f"HieraMAS demo {path.name}")
    table = _json(path / "evaluation.json")
    rows = table.get("methods", []) if isinstance(table, dict) else table
    data.methods = [dict(r) for r in rows]
    data.methods_caption = "Held-out evaluation of the demo (evaluation.json)."
    flags = {bool(r.get("emulated", True)) for r in data.methods}
    stage1 = _stage1(path / "stage1") if _is_stage1(path / "stage1") else None
    stage2 = _stage2(path / "stage2") if _is_stage2(path / "stage2") else None
    for part, name in ((stage1, "stage1/"), (stage2, "stage2/")):
        if part is None:
            data.notes.append(f"No {name} run in {path}.")
            continue
        data.dataset = data.dataset or part.dataset
        if part.emulated is not None:
            flags.add(part.emulated)
        data.facts += [(f"{name} {k}", v) for k, v in part.facts]
        covered = ("hieramas compare", "evaluation", EVAL_ROWS)  # the demo's own files have them
        data.notes += [f"{name}: {n}" for n in part.notes if not any(c in n for c in covered)]
    if stage1 is not None:
        data.curves, data.curves_caption = stage1.curves, stage1.curves_caption
        data.config_dag = stage1.config_dag
        data.roles, data.roles_caption = stage1.roles, stage1.roles_caption
    if stage2 is not None:
        data.dags, data.dags_caption = stage2.dags, stage2.dags_caption
        if stage2.roles:
            data.roles, data.roles_caption = stage2.roles, stage2.roles_caption
    _demo_selections(data, path)
    data.emulated = flags.pop() if len(flags) == 1 else None
    _add_trace(data, path)
    return data


def _demo_selections(data: ReportData, path: Path) -> None:
    """The DAG and LLMs each evaluated query ran (``evaluation.jsonl``, read from its trace)."""
    rows = [r for r in _jsonl(path / "evaluation.jsonl") if "edges" in r]
    if not rows:
        return
    data.dags = {}
    for row in rows:
        data.dags.setdefault(str(row["method"]), []).append(_dag_of(row))
    data.dags_caption = (
        "The DAG each held-out query ran, per method, as its trace recorded it "
        "(evaluation.jsonl); density is edges over n(n-1)/2 of the supernodes that ran."
    )
    first = str(data.methods[0]["method"]) if data.methods else str(rows[0]["method"])
    mine = [r for r in rows if r["method"] == first and r.get("synthesizers")]
    if mine:
        doc = _config(path / "stage1" / "config.yaml")
        counts: dict[str, Counter[str]] = {}
        for row in mine:
            _count_assignment(counts, _node_roles(doc), row)
        data.roles = {data.dataset or "demo": counts}
        data.roles_caption = (
            f"Share of each role's slots per action: {first} on the {len(mine)} held-out "
            "queries (evaluation.jsonl)."
        )


# -- traces ------------------------------------------------------------------------------


def calls_of(events: Sequence[Mapping[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """One query's timed calls from its trace events (LLM calls, else supernode and decision
    runs): the query with the most events if several."""
    per_query: dict[str, list[Mapping[str, Any]]] = {}
    for ev in events:
        per_query.setdefault(str(ev.get("query_id", "")), []).append(ev)
    if not per_query:
        return "", []
    query_id = max(per_query, key=lambda q: len(per_query[q]))
    calls: list[dict[str, Any]] = []
    for ev in per_query[query_id]:
        kind = ev.get("event")
        if kind == "llm_call":
            calls.append({
                "label": f"{ev.get('node')}/{ev.get('slot')}" + (
                    f" #{ev['attempt']}" if int(ev.get("attempt", 1)) > 1 else ""
                ),
                "group": ev.get("node"), "model": ev.get("model"),
                "started": float(ev["started"]), "finished": float(ev["finished"]),
                "outcome": ev.get("outcome", "ok"),
            })  # fmt: skip
    if not calls:  # no per-call events: the supernodes and the decision
        for ev in per_query[query_id]:
            if ev.get("event") in ("supernode", "decision") and ev.get("started") is not None:
                calls.append({
                    "label": str(ev.get("node")), "group": ev.get("event"),
                    "model": (ev.get("models") or {}).get("synthesizer") or ev.get("model"),
                    "started": float(ev["started"]), "finished": float(ev["finished"]),
                    "outcome": ev.get("status", "ok"),
                })  # fmt: skip
    return query_id, calls


def _add_trace(data: ReportData, directory: Path) -> None:
    events = list(_jsonl(directory / TRACE_FILE))
    if not events:
        return
    query_id, calls = calls_of(events)
    if calls:
        data.calls = calls
        data.calls_caption = (
            f"Query {query_id}: each call on a shared clock ({TRACE_FILE}); hatched bars failed."
        )


# -- entry -------------------------------------------------------------------------------


def load(source: Path) -> ReportData:
    """The report data of ``source`` (see the module docstring); :class:`SourceError` if it
    is none of the recognised kinds."""
    if source.is_file():
        try:
            return _bench(source)
        except (ValueError, OSError) as exc:
            raise SourceError(f"{source}: {exc}") from None
    if not source.is_dir():
        raise SourceError(f"{source} does not exist")
    if _is_demo(source):
        return _demo(source)
    if _is_stage1(source):
        return _stage1(source)
    if _is_stage2(source):
        return _stage2(source)
    if (source / "compare.json").exists():
        return _compare(source)
    raise SourceError(
        f"{source} is not a run directory (Stage 1 or 2), a compare directory, a demo "
        "directory or a bench JSON file"
    )
