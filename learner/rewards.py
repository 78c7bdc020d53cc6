"""Cost-aware rewards and their multi-level attribution to supernodes and slots.

Shaping (``c`` in US$)::

    solved:   max(exp(-λ·c), solved_floor)          ∈ [0.5, 1]   by default
    unsolved: max(-exp(λ'·c), unsolved_floor)       ∈ [-2.5, -1] by default

Attribution: ``R`` judges the final answer with the cost of the *whole query*;
``r_i`` judges supernode i's own answer with the cost of its own calls, and

    E_i = α_i·r_i + (1 − α_i)·R

with ``α_i = α`` for a supernode that ran with an answering role, and ``α_i = 0``
for an answerless role (e.g. Project Manager), a supernode the plan dropped
(nothing of its own to judge), or in final-reward-only mode (``E_i = R``).  A
missing, unparseable or ungraded answer counts as unsolved.  Every slot of
supernode i (its synthesizer and proposers) gets ``E_i``; the decision slot gets
``R``.  (The paper's code charged ``R`` only the decision node's cost.)

A dropped answering supernode credited with ``R`` alone is favoured over a running one
whenever supernodes' own answers are wrong more often than final ones, which they are:
each synthesizer slot then finds ``skip`` better on average, though dropping does not
help the query (docs/results.md, the fifth MMLU check).  ``dropped="peers"`` credits it
instead as the mean of the running answering supernodes' ``r_j``: at the node level
dropping is then neutral, and only ``R`` (accuracy and the query's cost) judges it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from hieramas.learner.episode import Episode, NodeOutcome
from hieramas.learner.slots import SlotLayout

__all__ = [
    "DroppedCredit",
    "RewardConfig",
    "RewardMode",
    "cost_reward",
    "final_reward",
    "node_alpha",
    "node_rewards",
    "slot_rewards",
]

RewardMode = Literal["multi", "final"]
DroppedCredit = Literal["final", "peers"]


@dataclass(frozen=True, slots=True)
class RewardConfig:
    """Reward shaping and attribution settings (defaults: the paper's)."""

    alpha: float = 0.5
    lam: float = 300.0
    lam_unsolved: float = 300.0
    solved_floor: float = 0.5
    unsolved_floor: float = -2.5
    mode: RewardMode = "multi"
    dropped: DroppedCredit = "final"
    """A dropped answering supernode's credit: ``R`` (``final``) or ``α·mean r_j + (1−α)·R``
    over the running answering supernodes (``peers``); see the module docstring."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError("alpha must be in [0, 1]")
        if self.lam < 0 or self.lam_unsolved < 0:
            raise ValueError("lambda must be non-negative")
        if self.mode not in ("multi", "final"):
            raise ValueError(f"unknown reward mode {self.mode!r}")
        if self.dropped not in get_args(DroppedCredit):
            raise ValueError(f"unknown dropped-supernode credit {self.dropped!r}")


def cost_reward(solved: bool | None, cost_usd: float, cfg: RewardConfig) -> float:
    """The shaped reward of one verdict at one cost (None counts as unsolved)."""
    cost = max(cost_usd, 0.0)
    if solved:
        return max(math.exp(-cfg.lam * cost), cfg.solved_floor)
    # exp overflows past ~709: the floor binds long before, so cap the exponent
    return max(-math.exp(min(cfg.lam_unsolved * cost, 700.0)), cfg.unsolved_floor)


def final_reward(episode: Episode, cfg: RewardConfig) -> float:
    """``R``: the final answer's verdict at the whole query's cost."""
    return cost_reward(episode.final_correct, episode.total_cost_usd, cfg)


def node_alpha(node: NodeOutcome, cfg: RewardConfig) -> float:
    """The weight of the node's own reward: 0 when it has no answer of its own to judge."""
    if cfg.mode == "final" or node.answerless or not node.ran:
        return 0.0
    return cfg.alpha


def node_rewards(episode: Episode, cfg: RewardConfig) -> dict[str, float]:
    """``E_i`` for every supernode of the episode."""
    big_r = final_reward(episode, cfg)
    own = {
        name: cost_reward(node.correct, node.cost_usd, cfg)
        for name, node in episode.nodes.items()
        if node_alpha(node, cfg)
    }
    peers = sum(own.values()) / len(own) if own else None
    out = {}
    for name, node in episode.nodes.items():
        if name in own:
            out[name] = cfg.alpha * own[name] + (1.0 - cfg.alpha) * big_r
        elif _peer_credited(node, cfg) and peers is not None:
            out[name] = cfg.alpha * peers + (1.0 - cfg.alpha) * big_r
        else:
            out[name] = big_r
    return out


def _peer_credited(node: NodeOutcome, cfg: RewardConfig) -> bool:
    return cfg.dropped == "peers" and cfg.mode == "multi" and not node.ran and not node.answerless


def slot_rewards(
    episode: Episode, layout: SlotLayout, cfg: RewardConfig
) -> npt.NDArray[np.float64]:
    """``[S]`` rewards in layout slot order: ``E_i`` for supernode i's slots, ``R`` for the decision.

    A supernode the episode has no record of gets ``R`` (it had nothing of its own).
    """
    big_r = final_reward(episode, cfg)
    per_node = node_rewards(episode, cfg)
    return np.array(
        [big_r if s.kind == "decision" else per_node.get(s.node, big_r) for s in layout.slots],
        dtype=np.float64,
    )
