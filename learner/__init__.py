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
- :mod:`.provider`: the controller's policy provider, following the store live;
- :mod:`.assembly`, :mod:`.grading`, :mod:`.lineage`, :mod:`.consumer`,
  :mod:`.rundir`: episodes from traces, grading, the lineage being trained, the
  trace consumer, the run directory;
- :mod:`.service`: the learner process itself; :mod:`.process`: it as a child process.

Names are imported lazily, so ``hieramas.learner.store`` or ``.process`` can be used
without loading torch.  The DAG generator and Stage-2 graph classifier are not built yet.
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
