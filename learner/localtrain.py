"""Stage-1 training on the REAL local llama.cpp models (``hieramas train --local``).

The emulated runs train on every role of a domain with two proposers each; on real models
on this machine's CPU one call costs seconds to half a minute, so the local config is
small enough that a training query costs one or two calls:

- **one supernode** (HumanEval: the Programming Expert; else the domain's first answering
  role) with **one proposer**.  Its slots are the synthesizer (an LLM, ``pass`` or
  ``vote``: the proposal unchanged) and the proposer (an LLM or ``skip``: the synthesizer
  answers alone), so the policy chooses among one model alone, one model's answer
  reviewed by another, and the proposal passed on;
- **decision ``vote``**: with one answering supernode the decision takes its answer and
  makes no call;
- the **local pool** (:func:`hieramas.tasks.baselines.local_pool`: every local model, at
  NOTIONAL prices) and the bench's local limits (``max_tokens`` 384, 900 s per query).

The config is built with a placeholder endpoint URL (:data:`PLACEHOLDER_URL`), which is
what the run's identity is computed from and what ``<run-dir>/config.yaml`` holds; the
live config points at the server this run started (:func:`with_base_url`), whose port
changes from one start to the next, so a resumed run still matches its directory.

**Held-out items** (``--holdout N``): the dataset's first N items in file order (the test
items of ``hieramas bench --split all --limit N``) are in neither the training nor the
validation items; the others are split 80/20, seeded (:func:`training_items`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from hieramas.learner.children import record_children
from hieramas.learner.filepolicy import file_planner
from hieramas.learner.trainconfig import DOMAIN_OF, with_planner
from hieramas.tasks import baselines, datasets
from hieramas.tasks.datasets import Item

__all__ = [
    "LOCAL_CHILD",
    "LOCAL_LIMITS",
    "PLACEHOLDER_URL",
    "eval_config",
    "local_server",
    "local_training_config",
    "training_items",
    "with_base_url",
]

LOCAL_CHILD = "local_llm"
"""The llama.cpp server's name among a run's recorded children."""

PLACEHOLDER_URL = "http://127.0.0.1:8080/v1"
"""The endpoint URL of a local run's stored config (replaced by the live server's)."""

LOCAL_LIMITS: dict[str, Any] = {
    "query_timeout_s": 900.0,
    "node_timeout_s": 600.0,
    "max_tokens": 384,
}
"""As ``hieramas bench --local``: the same budget per query as the real rows it sits beside."""

HOLDOUT_FRACTIONS = (0.8, 0.2, 0.0)
"""How the items after the held-out ones are split into training and validation."""


def _role(domain: str) -> str:
    from hieramas.tasks.prompts import catalog

    roles = catalog().domain(domain).roles
    names = [r.name for r in roles if r.answers]
    if domain == "humaneval" and "Programming Expert" in names:
        return "Programming Expert"
    return names[0]


def local_training_config(
    dataset: str,
    *,
    models: Sequence[str] | None = None,
    embedder: str | None = None,
    base_url: str = PLACEHOLDER_URL,
) -> dict[str, Any]:
    """The config document of a local training run (see the module docstring)."""
    domain = DOMAIN_OF[dataset]
    pool = baselines.local_pool(base_url, models, max_concurrency=1)
    llms = pool.models
    doc: dict[str, Any] = {
        "name": f"stage1-{dataset}-local",
        "domain": domain,
        "endpoints": {n: dict(e) for n, e in pool.endpoints.items()},
        "llms": {n: dict(v) for n, v in pool.llms.items()},
        "supernodes": {
            "solver": {
                "role": _role(domain),
                "proposers": [llms[1] if len(llms) > 1 else llms[0]],
                "synthesizer": llms[0],
            }
        },
        "edges": [],
        "decision": "vote",
        "limits": dict(LOCAL_LIMITS),
    }
    planner: dict[str, Any] = {"kind": "learned"}
    if embedder:
        planner["embedder"] = embedder
    return with_planner(doc, planner)


def with_base_url(doc: dict[str, Any], base_url: str) -> dict[str, Any]:
    """``doc`` with every non-emulator endpoint served at ``base_url``."""
    endpoints = {
        name: dict(e) if e.get("kind", "openai") == "emulator" else {**e, "base_url": base_url}
        for name, e in doc.get("endpoints", {}).items()
    }
    return {**doc, "endpoints": endpoints}


def training_items(
    dataset: str,
    *,
    holdout: int,
    seed: int,
    eval_items: int,
    data_dir: Path | None,
) -> tuple[list[Item], list[Item]]:
    """The training and (first ``eval_items``) validation items, without the first
    ``holdout`` items of the file (see the module docstring)."""
    from hieramas.benchcli import DATASETS

    items = datasets.load(DATASETS[dataset][0], data_dir)
    if holdout >= len(items):
        raise datasets.DatasetError(
            f"--holdout {holdout} leaves none of the {len(items)} items of {dataset} to train on"
        )
    parts = datasets.split(items[holdout:], seed=seed, fractions=HOLDOUT_FRACTIONS)
    return list(parts.train), list(parts.validation)[:eval_items]


@contextmanager
def local_server(run_dir: Path, models: Sequence[str] | None) -> Iterator[tuple[str, int | None]]:
    """Serve the local models for a run: their base URL and the server's pid.

    The pid is recorded among the run's children at once (and must stay in every later
    record), so a run killed with SIGKILL has the server stopped when it is resumed.
    """
    from hieramas.llm.local.server import LocalServer

    server = LocalServer(list(models) if models else None)
    with server:
        proc = server.process
        pid = proc.pid if proc else None
        record_children(run_dir, {LOCAL_CHILD: pid})
        yield server.base_url, pid


def eval_config(config_text: str, checkpoint: Path) -> str:
    """A run's config planned greedily by the checkpoint file (for ``hieramas bench
    --config``; its endpoints are retargeted by ``bench --local``)."""
    doc = yaml.safe_load(config_text)
    planned = with_planner(doc, file_planner(checkpoint.resolve()))
    return yaml.safe_dump(planned, sort_keys=False)
