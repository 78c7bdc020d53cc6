"""The report's figures: pure matplotlib (Agg) functions taking plain data and a path.

Each function draws one figure and writes it atomically (a reader never sees half a PNG).
They know nothing about run directories (:mod:`.sources` reads those); the caller puts
the EMULATED label into the title when the data came from the emulator.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # no display: figures are files
import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "Call",
    "accuracy_cost",
    "dag",
    "dag_grid",
    "gantt",
    "heatmap",
    "learning_curves",
    "pareto_front",
]

Call = Mapping[str, Any]
"""One timed call of a query: ``label`` (row), ``started``/``finished`` (seconds), optional
``group`` (colour: e.g. the node or ``decision``), ``model`` and ``outcome``."""


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, accuracy) points no other point beats (cheaper or equal and at
    least as accurate, one of them strictly), by increasing cost."""
    front = []
    for i, (cost, acc) in enumerate(points):
        dominated = any(
            c <= cost and a >= acc and (c < cost or a > acc)
            for j, (c, a) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def accuracy_cost(summaries: Sequence[Mapping[str, Any]], path: Path, title: str) -> Path:
    """Accuracy (95% CI bars) against cost per query (log scale), the Pareto front drawn.

    Each summary has ``method``, ``accuracy``, ``ci95`` ([low, high]) and
    ``cost_per_query_usd``; methods named ``learned...``/``classifier...`` are starred."""
    points = [(max(float(s["cost_per_query_usd"]), 1e-9), float(s["accuracy"])) for s in summaries]
    front = pareto_front(points)
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    for i, s in enumerate(summaries):
        cost, acc = points[i]
        low, high = s.get("ci95") or (acc, acc)
        learned = str(s["method"]).startswith(("learned", "classifier"))
        ax.errorbar(
            cost, acc, yerr=[[max(acc - low, 0.0)], [max(high - acc, 0.0)]],
            fmt="*" if learned else "o",
            markersize=12 if learned else 7, capsize=3,
            color="tab:red" if learned else ("tab:blue" if i in front else "tab:gray"),
        )  # fmt: skip
        ax.annotate(
            str(s["method"]), (cost, acc), textcoords="offset points",
            xytext=(6, 4 if i % 2 == 0 else -11), fontsize=8,
        )  # fmt: skip
    ax.plot(
        [points[i][0] for i in front], [points[i][1] for i in front], "--",
        color="tab:blue", alpha=0.6, label="Pareto front",
    )  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("cost per query (US$, log scale)")
    ax.set_ylabel("accuracy (95% Wilson CI)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def learning_curves(
    series: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]], path: Path, title: str
) -> Path:
    """One panel per quantity (e.g. ``reward``, ``accuracy``, ``cost per query (US$)``,
    ``policy version``), each with named lines of (iteration, value) points."""
    panels = [(name, lines) for name, lines in series.items() if any(lines.values())]
    cols = 2
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(10, 3.2 * rows), dpi=110, squeeze=False)
    for ax, (name, lines) in zip(axes.flat, panels, strict=False):
        for label, points in lines.items():
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, "-o" if len(points) < 30 else "-", markersize=3, label=label)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _draw_dag(ax: Any, nodes: Sequence[str], edges: Sequence[tuple[str, str]], title: str) -> None:
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(edges)
    try:  # left to right by topological generation: a node's inputs sit to its left
        for layer, names in enumerate(nx.topological_generations(graph)):
            for name in names:
                graph.nodes[name]["layer"] = layer
        pos = nx.multipartite_layout(graph, subset_key="layer")
    except nx.NetworkXUnfeasible:  # not a DAG: still draw it
        pos = nx.circular_layout(graph)
    used = {n for e in edges for n in e}
    colors = ["#9ecae1" if n in used else "#e0e0e0" for n in graph.nodes]
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_color=colors, node_size=900)
    nx.draw_networkx_labels(
        graph, pos, ax=ax, labels={n: n.replace("_", "\n") for n in graph.nodes}, font_size=6
    )
    nx.draw_networkx_edges(
        graph, pos, ax=ax, arrows=True, arrowsize=12, node_size=900,
        connectionstyle="arc3,rad=0.12", edge_color="#444444",
    )  # fmt: skip
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def dag(nodes: Sequence[str], edges: Sequence[tuple[str, str]], path: Path, title: str) -> Path:
    """One DAG drawn as a directed graph (roles as nodes, layered left to right)."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    _draw_dag(ax, nodes, edges, title)
    fig.tight_layout()
    return _save(fig, path)


def dag_grid(
    graphs: Sequence[tuple[Sequence[str], Sequence[tuple[str, str]], str]],
    path: Path,
    title: str,
) -> Path:
    """Several DAGs side by side: each (nodes, edges, caption)."""
    cols = min(3, max(1, len(graphs)))
    rows = max(1, math.ceil(len(graphs) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.0 * rows), dpi=100, squeeze=False)
    for ax, (nodes, edges, caption) in zip(axes.flat, graphs, strict=False):
        _draw_dag(ax, nodes, edges, caption)
    for ax in list(axes.flat)[len(graphs) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def heatmap(
    matrix: Sequence[Sequence[float]],
    rows: Sequence[str],
    cols: Sequence[str],
    path: Path,
    title: str,
    *,
    colorbar: str = "",
    fmt: str = "{:.2f}",
    vmin: float | None = 0.0,
    vmax: float | None = None,
) -> Path:
    """A labelled heatmap with each cell's value written in it."""
    fig, ax = plt.subplots(
        figsize=(max(4.5, 0.75 * len(cols) + 2.5), max(3.0, 0.42 * len(rows) + 1.8)), dpi=110
    )
    image = ax.imshow(matrix, cmap="viridis", aspect="auto", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(cols)), labels=list(cols), rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), labels=list(rows), fontsize=8)
    top = max((v for row in matrix for v in row), default=0.0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(
                j, i, fmt.format(value), ha="center", va="center", fontsize=6.5,
                color="black" if top and value > 0.6 * top else "white",
            )  # fmt: skip
    fig.colorbar(image, ax=ax, label=colorbar)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def gantt(calls: Sequence[Call], path: Path, title: str) -> Path:
    """A query's calls as horizontal bars on a shared clock (seconds from the first start)."""
    start = min((float(c["started"]) for c in calls), default=0.0)
    ordered = sorted(calls, key=lambda c: (float(c["started"]), str(c["label"])))
    groups = list(dict.fromkeys(str(c.get("group", "")) for c in ordered))
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.3 * len(ordered) + 1.5)), dpi=110)
    for i, call in enumerate(ordered):
        left = float(call["started"]) - start
        width = max(float(call["finished"]) - float(call["started"]), 1e-4)
        color = cmap(groups.index(str(call.get("group", ""))) % 10)
        failed = call.get("outcome", "ok") != "ok"
        ax.barh(i, width, left=left, color=color, edgecolor="red" if failed else "none",
                hatch="//" if failed else None)  # fmt: skip
        if call.get("model"):
            ax.text(left + width, i, f" {call['model']}", va="center", fontsize=6)
    ax.set_yticks(range(len(ordered)), labels=[str(c["label"]) for c in ordered], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the query's first call")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
