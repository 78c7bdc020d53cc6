"""``write_report``: read a source (:mod:`.sources`), draw its figures (:mod:`.figures`) and
write ``report.md`` (and ``report.html``) beside them (:mod:`.markdown`)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from hieramas.report import figures
from hieramas.report.analysis import (
    consensus,
    edge_frequency,
    jaccard_matrix,
    mean_pairwise_jaccard,
    role_shares,
    top_dags,
)
from hieramas.report.markdown import Section, label_of, methods_table, render, to_html
from hieramas.report.sources import PSEUDO, ReportData, load

__all__ = ["TOP_DAGS", "write_report"]

TOP_DAGS = 6
"""How many of the most frequent DAGs are drawn and compared."""


def _slug(name: str) -> str:
    """A file-name part: runs of other characters become one dash."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _methods(data: ReportData, out: Path, label: str) -> Section | None:
    usable = [m for m in data.methods if m.get("accuracy") is not None]
    if not usable:
        return None
    points = [(float(m.get("cost_per_query_usd") or 0.0), float(m["accuracy"])) for m in usable]
    front = [str(usable[i]["method"]) for i in figures.pareto_front(points)]
    figs = []
    if all(m.get("cost_per_query_usd") is not None for m in usable):
        figures.accuracy_cost(usable, out / "accuracy_cost.png",
                              f"{label} {data.dataset}: accuracy against cost")  # fmt: skip
        figs.append("accuracy_cost.png")
    caption = (data.methods_caption + " Starred in the table: the Pareto front (no other "
               "method is both cheaper and at least as accurate).").strip()  # fmt: skip
    return Section("Accuracy against cost", caption, figs, methods_table(usable, front))


def _curves(data: ReportData, out: Path, label: str) -> Section | None:
    if not any(any(lines.values()) for lines in data.curves.values()):
        return None
    figures.learning_curves(data.curves, out / "learning_curves.png",
                            f"{label} {data.dataset}: learning curves")  # fmt: skip
    return Section("Learning curves", data.curves_caption, ["learning_curves.png"])


def _dags(data: ReportData, out: Path, label: str) -> list[Section]:
    sections = []
    for method, dags in data.dags.items():
        if not dags:
            continue
        top = top_dags(dags, TOP_DAGS)
        slug = _slug(method)
        where = f"{label} {data.dataset}, {method}"
        distinct = len(set(dags))
        graphs = [
            (t.dag.nodes, sorted(t.dag.edges),
             f"#{i + 1}: {t.count}/{len(dags)} queries, density {t.dag.density:.2f}")
            for i, t in enumerate(top)
        ]  # fmt: skip
        agreed = consensus(dags)
        if distinct > 1:
            graphs.append((agreed.nodes, sorted(agreed.edges),
                           f"consensus: edges in > half the queries ({len(agreed.edges)})"))  # fmt: skip
        figs = [f"dags_{slug}.png"]
        figures.dag_grid(graphs, out / figs[0], f"{where}: most frequent DAGs")
        if len(top) > 1:
            names = [f"#{i + 1}" for i in range(len(top))]
            figures.heatmap(
                jaccard_matrix([t.dag.edges for t in top]), names, names,
                out / f"jaccard_{slug}.png", f"{where}: Jaccard similarity of the top DAGs' edges",
                colorbar="Jaccard", vmax=1.0,
            )  # fmt: skip
            figs.append(f"jaccard_{slug}.png")
        nodes = list(dict.fromkeys(n for d in dags for n in d.nodes))
        if distinct > 1:
            figures.heatmap(
                edge_frequency(dags, nodes), nodes, nodes, out / f"edges_{slug}.png",
                f"{where}: share of queries with each edge (row -> column)",
                colorbar="share of queries", vmax=1.0,
            )  # fmt: skip
            figs.append(f"edges_{slug}.png")
        mean_density = sum(d.density for d in dags) / len(dags)
        alike = mean_pairwise_jaccard([d.edges for d in dags])
        ran = (
            "once each" if top[0].count == 1
            else "every query the same" if distinct == 1
            else f"the most frequent {top[0].count} times"
        )  # fmt: skip
        caption = (
            f"{data.dags_caption} {method}: {len(dags)} queries ran {distinct} distinct "
            f"DAG{'s' if distinct > 1 else ''} ({ran}), mean density {mean_density:.2f}, mean "
            f"pairwise Jaccard similarity of their edge sets {alike:.2f}."
        ).strip()
        if distinct > 1:
            caption += (
                f" Drawn: the {len(top)} most frequent and the consensus DAG; then the "
                "Jaccard similarity of the drawn ones and how often each edge was chosen."
            )
        sections.append(Section(f"DAGs run by {method}", caption, figs))
    if not sections and data.config_dag is not None:
        dag = data.config_dag
        figures.dag(dag.nodes, sorted(dag.edges), out / "config_dag.png",
                    f"{label}: the config's DAG ({len(dag.edges)} edges, density "
                    f"{dag.density:.2f})")  # fmt: skip
        sections.append(Section("The DAG", "Every query of this run ran the config's DAG.",
                                ["config_dag.png"]))  # fmt: skip
    return sections


def _roles(data: ReportData, out: Path, label: str) -> Section | None:
    figs = []
    for name, counts in data.roles.items():
        if not counts:
            continue
        seen = {a for per_role in counts.values() for a in per_role}
        actions = [a for a in sorted(seen) if a not in PSEUDO] + [a for a in PSEUDO if a in seen]
        rows, cols, matrix = role_shares(counts, actions)
        slug = _slug(name) or "run"
        figures.heatmap(matrix, rows, cols, out / f"llm_by_role_{slug}.png",
                        f"{label} {name}: LLM selection per role (share of the role's slots)",
                        colorbar="share of slots", vmax=1.0)  # fmt: skip
        figs.append(f"llm_by_role_{slug}.png")
    if not figs:
        return None
    return Section("LLM selection by role", data.roles_caption, figs)


def _gantt(data: ReportData, out: Path, label: str) -> Section | None:
    if not data.calls:
        return None
    figures.gantt(data.calls, out / "latency_breakdown.png",
                  f"{label}: a query's latency breakdown")  # fmt: skip
    return Section("A query's latency breakdown", data.calls_caption, ["latency_breakdown.png"])


def write_report(source: Path, out: Path | None = None, *, html: bool = False) -> Path:
    """Write the report of ``source`` (a run directory, a compare or demo directory, or a
    bench JSON file) into ``out`` (default ``source/report``, or ``NAME-report`` beside a
    bench file): figures as PNGs and ``report.md`` (``report.html`` too with ``html``).
    Returns the path of ``report.md``; :class:`~hieramas.report.sources.SourceError` if
    ``source`` is not a recognised kind."""
    source = Path(source)
    data = load(source)
    if out is None:
        out = source / "report" if source.is_dir() else source.with_name(f"{source.stem}-report")
    out.mkdir(parents=True, exist_ok=True)
    label = label_of(data.emulated)
    short = label.split(" (")[0]
    sections: list[Section | None] = [
        _methods(data, out, short),
        _curves(data, out, short),
        *_dags(data, out, short),
        _roles(data, out, short),
        _gantt(data, out, short),
    ]
    notes = list(data.notes)
    if not data.calls:
        notes.append(
            "No trace.jsonl: a query's latency breakdown needs its trace events "
            "(`hieramas explain QUERY_ID` shows one from the stream)."
        )
    text = render(data.title, label, data.facts, [s for s in sections if s], notes)
    path = out / "report.md"
    _write(path, text)
    if html:
        _write(out / "report.html", to_html(text, data.title))
    return path
