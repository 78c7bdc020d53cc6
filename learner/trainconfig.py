"""The configs Stage-1 training runs on, and the pool facts its baselines are chosen by.

:func:`training_config` builds the default config of a dataset: **every role of the
domain** (8 for MMLU-Redux, 3 for MATH and GSM8K, 5 for HumanEval), **two proposers
per supernode**, the **complete forward DAG** in role order, the **whole emulated
pool** as the action vocabulary, the pool's **strongest model as the decision LLM**
(gpt-5-mini in the default profiles, as in the paper), and a ``learned`` planner.
Why this one:

- Stage 1 chooses LLMs, not edges, so the DAG is fixed; the complete DAG is the
  superset every other DAG is a pruning of, and the policy can still drop a
  supernode (synthesizer ``skip``) or a proposer (``skip``).
- Two proposers per supernode is the paper's lower bound (2–6): 24 slots on MMLU
  (8 synthesizers and 16 proposers) over 11 actions.  More proposers multiply the
  action space without adding anything the policy cannot express by its choice of
  LLMs, and ≤ 2,000 training queries must suffice to learn it.
- The decision LLM is not a slot (the controller's assignment cannot carry it), so
  it is fixed; the strongest synthesizer of the pool is the paper's choice.

The starting assignment (a seeded mixture) only matters before the first policy
version loads: from then on the policy fills every slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from hieramas.emulator.profiles import PoolProfiles, load_profiles
from hieramas.tasks import baselines

__all__ = [
    "DOMAIN_OF",
    "best_model",
    "cheapest_model",
    "pool_of",
    "to_yaml",
    "training_config",
    "with_planner",
]

DOMAIN_OF = {"mmlu": "mmlu", "math": "math", "gsm8k": "gsm8k", "humaneval": "humaneval"}
"""CLI dataset name -> prompt domain (as ``hieramas bench`` names them)."""


def pool_of(profiles: PoolProfiles, models: Sequence[str] | None = None) -> baselines.Pool:
    """The emulated pool of ``profiles`` (its prices), optionally a subset, in file order."""
    names = list(models) if models else list(profiles.models)
    unknown = [n for n in names if n not in profiles.models]
    if unknown:
        raise baselines.BaselineError(
            f"not in the emulated pool: {', '.join(unknown)}; known: {', '.join(profiles.models)}"
        )
    llms = {
        n: {
            "endpoint": "emulator",
            "price_in": profiles.models[n].prices.input_per_m,
            "price_out": profiles.models[n].prices.output_per_m,
        }
        for n in names
    }
    return baselines.Pool({"emulator": {"kind": "emulator"}}, llms)


def best_model(profiles: PoolProfiles, domain: str, pool: baselines.Pool) -> str:
    """The pool's model with the highest target accuracy on ``domain`` (ties: the cheaper)."""
    return max(
        pool.models,
        key=lambda m: (profiles.models[m].accuracy.get(domain, 0.0), -_price(profiles, m)),
    )


def cheapest_model(profiles: PoolProfiles, pool: baselines.Pool) -> str:
    """The pool's model with the lowest price (input + output $/M; ties: the stronger)."""
    return min(pool.models, key=lambda m: (_price(profiles, m), m))


def _price(profiles: PoolProfiles, model: str) -> float:
    prices = profiles.models[model].prices
    return prices.input_per_m + prices.output_per_m


def with_planner(doc: dict[str, Any], planner: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (a config document) with its ``planner`` block replaced."""
    return {**doc, "planner": dict(planner)}


def training_config(
    dataset: str,
    *,
    seed: int = 0,
    profiles_path: str | None = None,
    models: Sequence[str] | None = None,
    decision: str | None = None,
    proposers_per_node: int = 2,
    edges: str = "full",
    roles: int | None = None,
    embedder: str | None = None,
    decode: str = "greedy",
    llm_temperature: float = 0.0,
) -> dict[str, Any]:
    """The default training config document of ``dataset`` (see the module docstring).

    ``edges``: ``full`` (complete forward DAG) or ``none`` (supernodes in parallel, the
    decision reads them all).  ``roles``: keep only the domain's first ``roles`` roles.
    ``embedder``: preloaded by the controller's planner.  ``decode``: how the planner
    decodes non-exploring (evaluation) queries, ``greedy`` or ``rotation`` (the paper's
    top-n rotation).  ``llm_temperature``: the LLMs' sampling temperature; at 0 a model
    repeated in a supernode answers as one call would, above 0 each of its slots is an
    independent sample (a seed per slot), as in self-consistency.
    """
    domain = DOMAIN_OF[dataset]
    profiles = load_profiles(profiles_path)
    pool = pool_of(profiles, models)
    opts = baselines.Options(
        seed=seed,
        decision=decision or best_model(profiles, domain, pool),
        proposers_per_node=proposers_per_node,
    )
    doc = baselines.hieramas_full(pool, domain, opts)
    if roles is not None:
        kept = list(doc["supernodes"])[: max(1, roles)]
        doc["supernodes"] = {n: doc["supernodes"][n] for n in kept}
        doc["edges"] = [e for e in doc["edges"] if e[0] in kept and e[1] in kept]
    if edges == "none":
        doc["edges"] = []
    elif edges != "full":
        raise ValueError(f"edges must be 'full' or 'none', not {edges!r}")
    doc["limits"] = {**doc["limits"], "temperature": float(llm_temperature)}
    doc["name"] = f"stage1-{dataset}"
    doc["llms"] = {n: dict(v) for n, v in pool.llms.items()}  # the whole pool is the vocabulary
    # no sampling seed: each controller samples from fresh entropy (a seed would make the
    # draws reproducible per version, see hieramas.learner.provider, but change the config)
    planner: dict[str, Any] = {"kind": "learned"}
    if embedder:
        planner["embedder"] = embedder
    if decode != "greedy":  # the default is left out: the config of older runs stays the same
        planner["mode"] = decode
    return with_planner(doc, planner)


def to_yaml(doc: dict[str, Any]) -> str:
    """The YAML text of a config document."""
    return yaml.safe_dump(doc, sort_keys=False)
