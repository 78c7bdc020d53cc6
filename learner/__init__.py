"""Learner core, Stage 1: pure, process-free pieces the learner service builds on.

- :mod:`.slots`: a config's slots (proposer positions, synthesizers, optionally the
  decision) and action vocabulary (``skip``, ``vote``, ``pass``, pool LLMs).
- :mod:`.masks`: the sequential action masks (who may skip, at least one answering
  supernode stays active).
- :mod:`.episode`: the record of one executed, graded query.
- :mod:`.rewards`: cost-aware rewards and multi-level attribution to supernodes/slots.
- :mod:`.embeddings`: query/role/LLM text embeddings (MiniLM, offline) with an LRU cache.
- :mod:`.profiles`: the role texts and LLM profiles the policy is conditioned on.
- :mod:`.policy`: the torch policy (logits per slot and action) and its decoders.
- :mod:`.planning`: planning one query with a policy version.
- :mod:`.reinforce`: the REINFORCE trainer (baseline, normalised advantages, entropy,
  temperature schedule).
- :mod:`.checkpoint`: versioned checkpoints as bytes (safetensors + JSON metadata).
- :mod:`.threads`: torch CPU thread settings (plan on one thread).

The names above touch no NATS, files or processes.  The learner service builds on
them in modules of its own (imported by name, not re-exported here):

- :mod:`.store`: published policy versions on NATS (object store + KV; no torch);
- :mod:`.provider`: the controller's policy provider, following the store live (its
  watch-and-load loop is :mod:`.follower`'s ``SeriesFollower``, shared with Stage 2's
  classifier provider); :mod:`.fixedpolicy`: a provider fixed to one checkpoint, a stored
  version (:mod:`.pinned`) or a file (:mod:`.filepolicy`);
- :mod:`.assembly`, :mod:`.grading`, :mod:`.lineage`, :mod:`.consumer`,
  :mod:`.rundir`: episodes from traces, grading, the lineage being trained, the
  trace consumer, the run directory;
- :mod:`.service`: the learner process itself; :mod:`.process`: it as a child process.

Names are imported lazily, so ``hieramas.learner.store`` or ``.process`` can be used
without loading torch.

Stage 2 (topology by graph classification), imported by name:

- :mod:`.dags`: the candidate generator (``generate_dags``: random order, spanning tree,
  forward edges up to a drawn density, deduplicated; numpy, seeded) and ``DagBatch``,
  whose adjacency is over the layout's node order, so ``DagBatch.edges(c)`` is what goes
  into the controller's ``Assignment`` and runs (no torch);
- :mod:`.graphdata`: executed candidates as tensors (``CandidateSet``: query embeddings,
  Stage-1 ``node_actions``, adjacencies, rewards, ``label_top_k`` labels) and PyG batches;
- :mod:`.classifier`: ``DagClassifierNet`` (torch-geometric; messages along the edges);
- :mod:`.dagtrain`: ``train_classifier`` (BCE or within-query ranking, per-query AUC and
  top-1, early stopping); :mod:`.dagcheckpoint`: versioned classifier checkpoints;
- :mod:`.dagplanning`: ``TopologyChooser``, M candidates of one query scored in one batch.
- :mod:`.topologyplanner`: the controller's ``stage2`` planner (Stage-1 policy, then the
  newest classifier's top-1 DAG) and ``NatsClassifierProvider`` (the store's ``dag.`` series);
- :mod:`.dagrun`: ``hieramas train --stage 2`` (candidates executed with a frozen Stage-1
  policy, appended per query and resumable, both losses trained, best published, evaluated;
  against a running stack its plans go through the store, :mod:`.dagtable`).
- :mod:`.roleskip`: role skipping (drop up to ``k`` answering supernodes leaning to skip);
  :mod:`.edgereinforce`: the per-edge REINFORCE baseline (independent Bernoulli edges);
  top-k with a vote of the runs' final answers: :mod:`hieramas.controller.vote`.

A data-generation driver builds a ``CandidateSet`` from executed queries (query text
embedded, the frozen policy's actions, each candidate's adjacency and reward), trains with
``train_classifier`` and publishes ``encode_classifier`` bytes; a planner wraps a
``TopologyChooser`` next to Stage 1's ``PolicyPlanner`` and puts ``choice.edges`` in the
query's ``Assignment``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hieramas.learner.checkpoint import (
        CHECKPOINT_FORMAT,
        Checkpoint,
        CheckpointError,
        CheckpointMeta,
        decode_checkpoint,
        encode_checkpoint,
    )
    from hieramas.learner.embeddings import (
        DEFAULT_MODEL,
        CachedEmbedder,
        EmbedderError,
        HashEmbedder,
        SentenceEmbedder,
        TextEmbedder,
    )
    from hieramas.learner.episode import Episode, NodeOutcome
    from hieramas.learner.masks import MaskRules, MaskWalker
    from hieramas.learner.planning import PlannedQuery, PolicyPlanner
    from hieramas.learner.policy import Decision, DecodeMode, Policy, PolicyNet
    from hieramas.learner.reinforce import TrainConfig, Trainer, UpdateStats, cosine_temperature
    from hieramas.learner.rewards import (
        RewardConfig,
        RewardMode,
        cost_reward,
        final_reward,
        node_rewards,
        slot_rewards,
    )
    from hieramas.learner.slots import (
        LayoutError,
        Slot,
        SlotAssignment,
        SlotLayout,
        SlotOptions,
    )
    from hieramas.learner.threads import set_torch_threads

_LAZY: dict[str, str] = {
    "CHECKPOINT_FORMAT": "checkpoint",
    "Checkpoint": "checkpoint",
    "CheckpointError": "checkpoint",
    "CheckpointMeta": "checkpoint",
    "decode_checkpoint": "checkpoint",
    "encode_checkpoint": "checkpoint",
    "DEFAULT_MODEL": "embeddings",
    "CachedEmbedder": "embeddings",
    "EmbedderError": "embeddings",
    "HashEmbedder": "embeddings",
    "SentenceEmbedder": "embeddings",
    "TextEmbedder": "embeddings",
    "Episode": "episode",
    "NodeOutcome": "episode",
    "MaskRules": "masks",
    "MaskWalker": "masks",
    "PlannedQuery": "planning",
    "PolicyPlanner": "planning",
    "Decision": "policy",
    "DecodeMode": "policy",
    "Policy": "policy",
    "PolicyNet": "policy",
    "TrainConfig": "reinforce",
    "Trainer": "reinforce",
    "UpdateStats": "reinforce",
    "cosine_temperature": "reinforce",
    "RewardConfig": "rewards",
    "RewardMode": "rewards",
    "cost_reward": "rewards",
    "final_reward": "rewards",
    "node_rewards": "rewards",
    "slot_rewards": "rewards",
    "LayoutError": "slots",
    "Slot": "slots",
    "SlotAssignment": "slots",
    "SlotLayout": "slots",
    "SlotOptions": "slots",
    "set_torch_threads": "threads",
}
"""Public name -> the submodule that defines it (imported on first use)."""

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_MODEL",
    "CachedEmbedder",
    "Checkpoint",
    "CheckpointError",
    "CheckpointMeta",
    "Decision",
    "DecodeMode",
    "EmbedderError",
    "Episode",
    "HashEmbedder",
    "LayoutError",
    "MaskRules",
    "MaskWalker",
    "NodeOutcome",
    "PlannedQuery",
    "Policy",
    "PolicyNet",
    "PolicyPlanner",
    "RewardConfig",
    "RewardMode",
    "SentenceEmbedder",
    "Slot",
    "SlotAssignment",
    "SlotLayout",
    "SlotOptions",
    "TextEmbedder",
    "TrainConfig",
    "Trainer",
    "UpdateStats",
    "cosine_temperature",
    "cost_reward",
    "decode_checkpoint",
    "encode_checkpoint",
    "final_reward",
    "node_rewards",
    "set_torch_threads",
    "slot_rewards",
]


def __getattr__(name: str) -> Any:
    # Lazy: importing a torch-free submodule (.store, .rundir, .process) must not load torch.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
