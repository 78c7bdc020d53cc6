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

Nothing here touches NATS, files or processes.  The DAG generator and Stage-2 graph
classifier are not built yet.
"""

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
