"""Counting what a run selected: the most frequent DAGs, their density and pairwise Jaccard
similarity, and each role's share of LLMs.  Plain data in, plain data out (no I/O)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Dag",
    "TopDag",
    "consensus",
    "density",
    "edge_frequency",
    "jaccard",
    "jaccard_matrix",
    "mean_pairwise_jaccard",
    "role_shares",
    "top_dags",
]

Edge = tuple[str, str]


@dataclass(frozen=True)
class Dag:
    """One query's topology: the supernodes that ran and the directed edges between them."""

    nodes: tuple[str, ...]
    edges: frozenset[Edge]

    @property
    def density(self) -> float:
        return density(len(self.nodes), len(self.edges))


@dataclass(frozen=True)
class TopDag:
    """A distinct DAG and how many queries ran it."""

    dag: Dag
    count: int
    share: float


def density(nodes: int, edges: int) -> float:
    """Edges over the ``n(n-1)/2`` forward pairs of ``nodes`` (as the DAG generator counts;
    1.0 for a single node)."""
    pairs = nodes * (nodes - 1) / 2
    return edges / pairs if pairs else 1.0


def top_dags(dags: Sequence[Dag], k: int) -> list[TopDag]:
    """The ``k`` most frequent distinct DAGs, most frequent first (ties: denser first, then
    by edges, so the order is deterministic)."""
    counts = Counter(dags)
    total = len(dags)
    ranked = sorted(
        counts.items(), key=lambda kv: (-kv[1], -len(kv[0].edges), sorted(kv[0].edges), kv[0].nodes)
    )
    return [TopDag(d, c, c / total) for d, c in ranked[:k]]


def jaccard(a: Iterable[Edge], b: Iterable[Edge]) -> float:
    """|a ∩ b| / |a ∪ b| of two edge sets (1.0 when both are empty)."""
    sa, sb = set(a), set(b)
    union = sa | sb
    return len(sa & sb) / len(union) if union else 1.0


def jaccard_matrix(sets: Sequence[Iterable[Edge]]) -> list[list[float]]:
    """Pairwise :func:`jaccard` of ``sets`` (symmetric, ones on the diagonal)."""
    frozen = [frozenset(s) for s in sets]
    return [[jaccard(a, b) for b in frozen] for a in frozen]


def mean_pairwise_jaccard(sets: Sequence[Iterable[Edge]]) -> float:
    """The mean :func:`jaccard` over all distinct pairs of ``sets`` (1.0 for fewer than 2):
    how alike a method's DAGs are across queries."""
    frozen = [frozenset(s) for s in sets]
    pairs = [(i, j) for i in range(len(frozen)) for j in range(i + 1, len(frozen))]
    if not pairs:
        return 1.0
    return sum(jaccard(frozen[i], frozen[j]) for i, j in pairs) / len(pairs)


def edge_frequency(dags: Sequence[Dag], nodes: Sequence[str]) -> list[list[float]]:
    """``freq[i][j]``: the share of ``dags`` with the edge ``nodes[i] -> nodes[j]``."""
    counts: Counter[Edge] = Counter(e for d in dags for e in d.edges)
    total = len(dags) or 1
    return [[counts[(a, b)] / total for b in nodes] for a in nodes]


def consensus(dags: Sequence[Dag], share: float = 0.5) -> Dag:
    """The DAG of the edges present in more than ``share`` of ``dags`` (over every node that
    ran in any of them)."""
    counts: Counter[Edge] = Counter(e for d in dags for e in d.edges)
    nodes = tuple(dict.fromkeys(n for d in dags for n in d.nodes))
    edges = frozenset(e for e, c in counts.items() if c > share * len(dags))
    return Dag(nodes, edges)


def role_shares(
    counts: Mapping[str, Mapping[str, int]], actions: Sequence[str] | None = None
) -> tuple[list[str], list[str], list[list[float]]]:
    """``counts[role][action]`` (slots given to an action) as a matrix of each role's shares:
    (action rows, role columns, ``share[action][role]``).  Actions default to those seen,
    most used first; every column sums to 1 over all its actions."""
    roles = list(counts)
    if actions is None:
        totals: Counter[str] = Counter()
        for per_role in counts.values():
            totals.update(per_role)
        actions = [a for a, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))]
    matrix = []
    for action in actions:
        row = []
        for role in roles:
            total = sum(counts[role].values())
            row.append(counts[role].get(action, 0) / total if total else 0.0)
        matrix.append(row)
    return list(actions), roles, matrix
