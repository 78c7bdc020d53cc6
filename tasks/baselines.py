"""Config builders for the baseline methods and the HieraMAS variants.

Every builder is a pure function ``(pool, domain, options) -> dict`` whose result is a
config document for :func:`hieramas.controller.config.parse_config` (``to_yaml`` turns it
into text).  All methods run through the same runtime; what differs is the DAG:

- ``single``: one supernode, one proposer, synthesizer ``pass``, decision ``vote``.  The
  proposer prompt asks for reasoning and then the answer, so this is a *role-prompted*
  single call.
- ``direct``: every supernode skipped, so the decision LLM answers alone, prompted to give
  the answer directly without reasoning (``alone_prompt: direct``).
- ``cot``: the same, with the single-agent chain-of-thought prompt
  (``decided_by: alone_all_skipped``).
- ``self-consistency``: one supernode with ``k`` proposers of one LLM sampled at
  ``temperature`` > 0 (distinct seeds per slot), synthesizer ``vote``.
- ``debate``: ``agents`` supernodes per round, each round fully connected to the previous
  one (a proposer sees its predecessors' outputs), decision ``vote``.  The decision votes
  over *every* supernode (all rounds): the runtime's decision reads all active nodes.
- ``moa``: Mixture-of-Agents, one supernode per layer with ``k`` proposers and an
  aggregator synthesizer, layers chained, decision ``vote``.
- ``hieramas-full``: every role of the domain, complete forward DAG, a seeded mixture.
- ``hieramas-random``: a seeded random DAG over the roles (random topological order,
  a spanning tree, extra forward edges up to ``density`` of all forward pairs), seeded
  mixture.
- ``hieramas-fixed``: the full DAG with every slot on one LLM.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from hieramas.tasks.prompts import roles as domain_roles
from hieramas.tasks.prompts.render import answerless_roles

__all__ = [
    "EMULATED_PRICES",
    "METHODS",
    "BaselineError",
    "Options",
    "Pool",
    "build",
    "cot",
    "debate",
    "direct",
    "emulated_pool",
    "hieramas_fixed",
    "hieramas_full",
    "hieramas_random",
    "local_pool",
    "moa",
    "random_dag",
    "self_consistency",
    "single",
    "to_yaml",
]

EMULATED_PRICES: dict[str, tuple[float, float]] = {
    "qwen3-8b": (0.035, 0.138),
    "qwen3-80b": (0.10, 0.80),
    "llama-8b": (0.02, 0.03),
    "deepseek-v3": (0.27, 0.40),
    "gemma-3-27b": (0.09, 0.16),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-4o-mini": (0.15, 0.60),
}
"""Approximate public list prices (US$/M tokens in, out) of the models the emulator imitates."""


class BaselineError(ValueError):
    """A method or its options cannot be built (unknown method, model, bad option)."""


@dataclass(frozen=True)
class Pool:
    """An LLM pool: endpoint blocks and LLM blocks (config-schema dicts), strongest first."""

    endpoints: Mapping[str, Mapping[str, Any]]
    llms: Mapping[str, Mapping[str, Any]]

    @property
    def models(self) -> list[str]:
        """The pool's LLM names in the given order."""
        return list(self.llms)

    def require(self, model: str) -> str:
        """``model`` if it is in the pool, else :class:`BaselineError`."""
        if model not in self.llms:
            raise BaselineError(f"unknown LLM {model!r}; pool: {', '.join(self.llms)}")
        return model

    def subset(self, names: Sequence[str]) -> Pool:
        """The pool restricted to ``names`` (in that order)."""
        return Pool(self.endpoints, {self.require(n): self.llms[n] for n in names})


def emulated_pool(models: Sequence[str] | None = None) -> Pool:
    """The embedded emulator's pool (list prices of the imitated models), optionally a subset."""
    names = list(models) if models else list(EMULATED_PRICES)
    unknown = [n for n in names if n not in EMULATED_PRICES]
    if unknown:
        raise BaselineError(
            f"not emulated: {', '.join(unknown)}; known: {', '.join(EMULATED_PRICES)}"
        )
    llms = {
        n: {
            "endpoint": "emulator",
            "price_in": EMULATED_PRICES[n][0],
            "price_out": EMULATED_PRICES[n][1],
        }
        for n in names
    }
    return Pool({"emulator": {"kind": "emulator"}}, llms)


def local_pool(
    base_url: str, models: Sequence[str] | None = None, *, max_concurrency: int = 2
) -> Pool:
    """Real local llama.cpp models at ``base_url`` with their NOTIONAL prices."""
    from hieramas.llm.local.specs import resolve_models

    chosen = resolve_models(list(models) if models else None)
    llms = {
        m.alias: {
            "endpoint": "local",
            "price_in": m.price_in_per_m,
            "price_out": m.price_out_per_m,
            "notional_prices": True,
        }
        for m in chosen
    }
    endpoint = {"base_url": base_url, "timeout_s": 900.0, "max_concurrency": max_concurrency}
    return Pool({"local": endpoint}, llms)


@dataclass(frozen=True)
class Options:
    """Method options; ``None`` means "the method's default" (usually the pool's first LLM)."""

    model: str | None = None
    k: int = 5
    temperature: float = 0.7
    agents: int = 3
    rounds: int = 2
    layers: int = 2
    proposers: Sequence[str] = field(default_factory=tuple)
    aggregator: str | None = None
    decision: str | None = None
    seed: int = 0
    density: float = 0.3
    proposers_per_node: int = 2
    max_tokens: int = 1024
    query_timeout_s: float = 120.0
    node_timeout_s: float = 60.0


def _doc(
    name: str,
    pool: Pool,
    domain: str,
    supernodes: dict[str, dict[str, Any]],
    edges: list[tuple[str, str]],
    decision: str,
    opts: Options,
    temperature: float = 0.0,
) -> dict[str, Any]:
    used = {decision}
    for spec in supernodes.values():
        used.update(spec["proposers"])
        used.add(spec["synthesizer"])
    llms = {n: dict(v) for n, v in pool.llms.items() if n in used}
    endpoints = {
        e: dict(v)
        for e, v in pool.endpoints.items()
        if any(llm["endpoint"] == e for llm in llms.values())
    }
    return {
        "name": name,
        "domain": domain,
        "endpoints": endpoints or {e: dict(v) for e, v in list(pool.endpoints.items())[:1]},
        "llms": llms,
        "supernodes": supernodes,
        "edges": [list(e) for e in edges],
        "decision": decision,
        "limits": {
            "query_timeout_s": opts.query_timeout_s,
            "node_timeout_s": opts.node_timeout_s,
            "max_tokens": opts.max_tokens,
            "temperature": temperature,
        },
    }


def _roles(domain: str) -> list[str]:
    try:
        return list(domain_roles(domain))
    except (KeyError, ValueError) as exc:
        raise BaselineError(f"unknown domain {domain!r}: {exc}") from None


def _solver_role(domain: str) -> str:
    """The first role of ``domain`` that gives an answer (HumanEval's planner does not)."""
    known = _roles(domain)
    silent = answerless_roles(domain)
    return next(r for r in known if r not in silent)


def _model(pool: Pool, opts: Options) -> str:
    if not pool.llms:
        raise BaselineError("empty LLM pool")
    return pool.require(opts.model) if opts.model else pool.models[0]


def single(pool: Pool, domain: str, opts: Options) -> dict[str, Any]:
    """One LLM, one call: a role-prompted proposer passed through (decision ``vote``)."""
    model = _model(pool, opts)
    node = {"role": _solver_role(domain), "proposers": [model], "synthesizer": "pass"}
    return _doc(f"single-{model}", pool, domain, {"solver": node}, [], "vote", opts)


def cot(pool: Pool, domain: str, opts: Options) -> dict[str, Any]:
    """One LLM, chain of thought: all supernodes skipped, the decision LLM answers alone."""
    model = _model(pool, opts)
    node = {"role": _solver_role(domain), "proposers": ["skip"], "synthesizer": "skip"}
    return _doc(f"cot-{model}", pool, domain, {"solver": node}, [], model, opts)


def direct(pool: Pool, domain: str, opts: Options) -> dict[str, Any]:
    """One LLM, no reasoning: like :func:`cot`, but the prompt asks for the answer only."""
    doc = cot(pool, domain, opts)
    doc["name"] = doc["name"].replace("cot-", "direct-", 1)
    doc["alone_prompt"] = "direct"
    return doc


def self_consistency(pool: Pool, domain: str, opts: Options) -> dict[str, Any]:
    """``k`` samples of one LLM at ``temperature`` > 0, plurality vote."""
    if opts.k < 1 or opts.temperature <= 0:
        raise BaselineError("self-consistency needs k >= 1 and temperature > 0")
    model = _model(pool, opts)
    node = {"role": _solver_role(domain), "proposers": [model] * opts.k, "synthesizer": "vote"}
    return _doc(
        f"sc{opts.k}-{model}", pool, domain, {"sc": node}, [], "vote", opts, opts.temperature
    )


def _letters(n: int) -> list[str]:
    return [chr(ord("a") + i) if n <= 26 else str(i) for i in range(n)]


def debate(pool: Pool, domain: str, opts: Options) -> dict[str, Any]:
    """``agents`` x ``rounds`` debate: each round sees every output of the previous one."""
    if opts.agents < 1 or opts.rounds < 1:
        raise BaselineError("debate needs agents >= 1 and rounds >= 1")
    agents = [pool.require(m) for m in opts.proposers] or [_model(pool, opts)]
    role = _solver_role(domain)
    supernodes: dict[str, dict[str, Any]] = {}
    edges: list[tuple[str, str]] = []
    previous: list[str] = []
    for r in range(1, opts.rounds + 1):
        current = []
        for i, letter in enumerate(_letters(opts.agents)):
            node = f"r{r}{letter}"
            llm = agents[i % len(agents)]
            supernodes[node] = {"role": role, "proposers": [llm], "synthesizer": "pass"}
            edges.extend((src, node) for src in previous)
            current.append(node)
        previous = current
    name = f"debate{opts.agents}x{opts.rounds}"
    return _doc(
        name,
        pool,
        domain,
        supernodes,
        edges,
        "vote",
        opts,
        opts.temperature if len(set(agents)) == 1 else 0.0,
    )


def moa(pool: Pool, domain: str, opts: Options) -> dict[str, Any]:
    """Mixture-of-Agents: ``layers`` chained supernodes, each ``k`` proposers + an aggregator."""
    if opts.layers < 1:
        raise BaselineError("moa needs layers >= 1")
    proposers = [pool.require(m) for m in opts.proposers] or pool.models[: max(1, min(opts.k, 3))]
    aggregator = pool.require(opts.aggregator) if opts.aggregator else _model(pool, opts)
    role = _solver_role(domain)
    supernodes = {
        f"layer{i}": {"role": role, "proposers": list(proposers), "synthesizer": aggregator}
        for i in range(1, opts.layers + 1)
    }
    edges = [(f"layer{i}", f"layer{i + 1}") for i in range(1, opts.layers)]
    return _doc(f"moa{opts.layers}", pool, domain, supernodes, edges, "vote", opts)


def _node_ids(roles: Sequence[str]) -> dict[str, str]:
    ids: dict[str, str] = {}
    for role in roles:
        base = "".join(c if c.isalnum() else "_" for c in role.lower()).strip("_") or "node"
        node, n = base, 2
        while node in ids.values():
            node, n = f"{base}_{n}", n + 1
        ids[role] = node
    return ids


def random_dag(nodes: Sequence[str], *, seed: int, density: float) -> list[tuple[str, str]]:
    """A seeded connected DAG: random order, a spanning tree, then extra forward edges up to
    ``density`` of all ``n(n-1)/2`` forward pairs (the Stage-2 generator,
    :func:`hieramas.learner.dags.generate_dags`, with ``d_min = d_max = density``)."""
    from hieramas.learner.dags import edges_of, generate_dags

    if not 0 <= density <= 1:
        raise BaselineError(f"density must be in [0, 1], got {density}")
    if not nodes:
        return []
    [adj] = generate_dags(len(nodes), 1, seed=seed, d_min=density, d_max=density)
    return edges_of(adj, list(nodes))


def _mixture(
    pool: Pool,
    domain: str,
    opts: Options,
    edges_of: Callable[[list[str]], list[tuple[str, str]]],
    name: str,
) -> dict[str, Any]:
    roles = _roles(domain)
    ids = _node_ids(roles)
    rng = random.Random(f"hieramas-mixture:{opts.seed}")
    models = pool.models
    if not models:
        raise BaselineError("empty LLM pool")
    supernodes = {
        ids[role]: {
            "role": role,
            "proposers": [rng.choice(models) for _ in range(max(1, opts.proposers_per_node))],
            "synthesizer": rng.choice(models),
        }
        for role in roles
    }
    decision = pool.require(opts.decision) if opts.decision else models[0]
    return _doc(name, pool, domain, supernodes, edges_of([ids[r] for r in roles]), decision, opts)


def _complete(nodes: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1 :]]


def hieramas_full(pool: Pool, domain: str, opts: Options) -> dict[str, Any]:
    """Every role, complete forward DAG (role order), seeded LLM mixture, decision LLM."""
    return _mixture(pool, domain, opts, _complete, "hieramas-full")


def hieramas_random(pool: Pool, domain: str, opts: Options) -> dict[str, Any]:
    """A seeded random DAG over the roles (see :func:`random_dag`), seeded LLM mixture."""
    return _mixture(
        pool,
        domain,
        opts,
        lambda nodes: random_dag(nodes, seed=opts.seed, density=opts.density),
        "hieramas-random",
    )


def hieramas_fixed(pool: Pool, domain: str, opts: Options) -> dict[str, Any]:
    """The full DAG with every proposer, synthesizer and the decision on one LLM."""
    model = _model(pool, opts)
    fixed = pool.subset([model])
    return _mixture(
        fixed,
        domain,
        Options(**{**opts.__dict__, "decision": model}),
        _complete,
        f"hieramas-fixed-{model}",
    )


Builder = Callable[[Pool, str, Options], dict[str, Any]]

METHODS: dict[str, Builder] = {
    "single": single,
    "direct": direct,
    "cot": cot,
    "self-consistency": self_consistency,
    "debate": debate,
    "moa": moa,
    "hieramas-full": hieramas_full,
    "hieramas-random": hieramas_random,
    "hieramas-fixed": hieramas_fixed,
}
"""Method name -> config builder."""


def build(method: str, pool: Pool, domain: str, opts: Options | None = None) -> dict[str, Any]:
    """The config document of ``method`` over ``pool`` for ``domain``."""
    builder = METHODS.get(method)
    if builder is None:
        raise BaselineError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    return builder(pool, domain, opts or Options())


def to_yaml(doc: Mapping[str, Any]) -> str:
    """YAML text of a config document (key order kept)."""
    return yaml.safe_dump(dict(doc), sort_keys=False)
