"""REINFORCE for the Stage-1 policy: per-slot credit, baseline, normalised advantages.

One update from a batch of sampled episodes::

    A[b, s]  = ρ[b, s] · norm(E[b, s] − baseline[s])
    loss     = −mean_{b,s} A[b, s] · log π(a[b, s] | mask[b, s]; T_b) − β · mean H[b, s]

- ``E[b, s]`` is slot s's reward (:func:`.rewards.slot_rewards`): multi-level credit,
  every slot judged by its own supernode's outcome.
- The baseline is a **per-slot exponential moving average** of past rewards, updated
  *after* the batch uses it (so it never includes the batch's own reward).  With
  ``group_baseline`` (the driver asks each train item several times in a row, see
  :attr:`.hyper.Hyper.group`), an episode whose item has other episodes in the batch is
  instead compared with their mean, per slot (leave-one-out): how hard the item is
  cancels, and what is left is how this plan did against other plans on the same
  item.  The price is fewer distinct items for the same budget (a K-th of them); off by
  default (docs/results.md has how it fared).  A
  learned, query-conditioned critic would cut more variance, but at the budgets of
  Stage 1 (tens to a few thousand queries) the critic itself is too noisy to trust
  and adds a second model to train; the EMA needs no tuning and cannot diverge.
- ``norm`` (``advantage_scale``) puts the advantages on a common scale over the
  unforced slots (a slot with one allowed action carries no choice and no gradient):
  ``batch`` centres them and divides by the batch's standard deviation; ``running``
  divides them by a moving average of the batches' reward standard deviation, so that
  a batch whose rewards differ only by cost (every answer right) is not blown up to the
  size of one with a wrong answer, which the batch scale does: in such a batch the
  cost term alone sets the update, as if λ were far larger.
- ``T_b`` is the temperature episode b was **sampled** with; log-probs and entropy are
  taken under that temperature and the same sequential masks.
- ``ρ`` corrects for episodes sampled by an older policy version (the learner is
  asynchronous): the per-slot ratio π_now/π_sampled, truncated at ``max_ratio``;
  exactly 1 for an on-policy episode.
- Adam with weight decay, gradient clipping, and a cosine temperature schedule from
  ``t0`` to ``t1`` over ``schedule_updates`` updates, read by whoever samples next.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from hieramas.learner.embeddings import TextEmbedder
from hieramas.learner.episode import Episode
from hieramas.learner.hyper import AdvantageScale, Hyper
from hieramas.learner.planning import unpack_embedding
from hieramas.learner.policy import Policy
from hieramas.learner.rewards import RewardConfig, final_reward, slot_rewards

__all__ = [
    "TrainConfig",
    "Trainer",
    "UpdateStats",
    "cosine_temperature",
    "leave_one_out_baseline",
]

_DEFAULT = Hyper()


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters of the REINFORCE trainer (the user-set ones default to :class:`Hyper`'s)."""

    lr: float = _DEFAULT.lr
    weight_decay: float = 1e-5
    grad_clip: float = 1.0
    entropy_coef: float = _DEFAULT.entropy_coef
    baseline_momentum: float = 0.9
    advantage_scale: AdvantageScale = _DEFAULT.advantage_scale
    max_ratio: float = 2.0
    t0: float = _DEFAULT.temp_start
    t1: float = _DEFAULT.temp_end
    schedule_updates: int = _DEFAULT.temp_updates
    group_baseline: bool = _DEFAULT.group > 1
    reward: RewardConfig = field(default_factory=RewardConfig)

    def with_hyper(self, hyper: Hyper) -> TrainConfig:
        """This config with the user-set settings of ``hyper``."""
        return replace(
            self,
            lr=hyper.lr,
            entropy_coef=hyper.entropy_coef,
            t0=hyper.temp_start,
            t1=hyper.temp_end,
            schedule_updates=hyper.temp_updates,
            group_baseline=hyper.group > 1,
            advantage_scale=hyper.advantage_scale,
            reward=replace(self.reward, dropped=hyper.dropped_credit),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready map (stored with checkpoints)."""
        return asdict(self)


def cosine_temperature(step: int, t0: float, t1: float, total: int) -> float:
    """The sampling temperature after ``step`` updates: cosine from ``t0`` to ``t1``, then ``t1``."""
    frac = min(max(step, 0) / max(total, 1), 1.0)
    return t1 + 0.5 * (t0 - t1) * (1.0 + math.cos(math.pi * frac))


def leave_one_out_baseline(
    rewards: npt.NDArray[np.float64],
    groups: Sequence[str | None],
    fallback: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """``[B, S]`` baselines: for episode b, the mean reward of the other episodes of its
    group (same item) in the batch, per slot; ``fallback [S]`` when it has none (alone in
    its group, or no group: ``None``)."""
    out = np.repeat(fallback[None].astype(np.float64), len(rewards), axis=0)
    members: dict[str, list[int]] = {}
    for b, key in enumerate(groups):
        if key is not None:
            members.setdefault(key, []).append(b)
    for rows in members.values():
        if len(rows) < 2:
            continue
        total = rewards[rows].sum(0)
        for b in rows:
            out[b] = (total - rewards[b]) / (len(rows) - 1)
    return out


@dataclass(frozen=True, slots=True)
class UpdateStats:
    """What one update saw and did."""

    step: int
    episodes: int
    used: int
    mean_reward: float
    accuracy: float
    mean_cost_usd: float
    loss: float
    entropy: float
    grad_norm: float
    mean_ratio: float
    temperature: float


class Trainer:
    """Updates a :class:`Policy` from batches of sampled :class:`Episode` records.

    An episode whose trace carried the planner's query embedding, made by an embedder
    of the same name as ``embedder``, is trained on that vector; the others' query
    texts are embedded again by ``embedder`` (give it a cache), in one batch.
    :attr:`carried` / :attr:`embedded` count each.  Not thread-safe: one trainer, one
    thread.
    """

    def __init__(
        self, policy: Policy, embedder: TextEmbedder, config: TrainConfig | None = None
    ) -> None:
        self.policy = policy
        self.embedder = embedder
        self.config = config or TrainConfig()
        self.step = 0
        self.carried = 0
        self.embedded = 0
        self.baseline = np.full(len(policy.layout.slots), np.nan)
        self.reward_scale = math.nan  # ``running``: moving average of the batches' reward std
        self.optimizer = torch.optim.Adam(
            policy.net.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )

    @property
    def temperature(self) -> float:
        """The temperature to sample the next training queries with."""
        c = self.config
        return cosine_temperature(self.step, c.t0, c.t1, c.schedule_updates)

    @staticmethod
    def usable(episode: Episode) -> bool:
        """Whether ``episode`` can be trained on: sampled, graded, with its sampling record."""
        return (
            episode.explore
            and episode.graded
            and episode.temperature is not None
            and episode.temperature > 0
        )

    def update(self, episodes: Sequence[Episode]) -> UpdateStats:
        """One gradient step from the usable episodes of ``episodes``.

        :class:`~.slots.LayoutError` if an episode's assignment does not fit the
        policy's layout (the caller should have rejected it).
        """
        cfg, policy = self.config, self.policy
        batch = [e for e in episodes if self.usable(e)]
        temperature = self.temperature
        if not batch:
            return UpdateStats(
                self.step, len(episodes), 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, temperature
            )
        actions_np = [policy.layout.encode(e.assignment) for e in batch]
        masks = policy.masks(actions_np)
        actions = torch.tensor(actions_np, dtype=torch.long)
        temps = torch.tensor([e.temperature for e in batch], dtype=torch.float32)
        rewards = np.stack([slot_rewards(e, policy.layout, cfg.reward) for e in batch])  # [B, S]
        free = masks.sum(-1) > 1  # [B, S] slots with a real choice

        ema = np.where(np.isnan(self.baseline), rewards.mean(0), self.baseline)
        baseline = np.broadcast_to(ema, rewards.shape)
        if cfg.group_baseline:
            baseline = leave_one_out_baseline(rewards, [e.item_id for e in batch], ema)
        adv = torch.from_numpy(rewards - baseline).float()
        if cfg.advantage_scale == "batch" and int(free.sum()) > 1:
            sel = adv[free]
            adv = (adv - sel.mean()) / (sel.std() + 1e-6)
        elif cfg.advantage_scale == "running":
            self._track_reward_scale(rewards[free.numpy()])
            if not math.isnan(self.reward_scale):
                adv = adv / max(self.reward_scale, 1e-3)

        policy.net.train()
        query = self._queries(batch)
        logits = policy.net(query)
        logp, entropy = policy.log_probs(logits, actions, masks, temps)
        ratio = torch.ones_like(logp)
        behaviour = [e.slot_log_probs for e in batch]
        if all(b is not None and len(b) == logp.shape[1] for b in behaviour):
            old = torch.tensor(behaviour, dtype=torch.float32)
            ratio = (logp.detach() - old).exp().clamp(max=cfg.max_ratio)
        weight = free.float()
        n_free = weight.sum().clamp(min=1.0)
        pg = -(ratio * adv * logp * weight).sum() / n_free
        ent = (entropy * weight).sum() / n_free
        loss = pg - cfg.entropy_coef * ent

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.net.parameters(), cfg.grad_clip)
        self.optimizer.step()
        policy.net.eval()

        m = cfg.baseline_momentum
        self.baseline = np.where(
            np.isnan(self.baseline), rewards.mean(0), m * self.baseline + (1 - m) * rewards.mean(0)
        )
        self.step += 1
        return UpdateStats(
            step=self.step,
            episodes=len(episodes),
            used=len(batch),
            mean_reward=float(np.mean([final_reward(e, cfg.reward) for e in batch])),
            accuracy=float(np.mean([bool(e.final_correct) for e in batch])),
            mean_cost_usd=float(np.mean([e.total_cost_usd for e in batch])),
            loss=float(loss.detach()),
            entropy=float(ent.detach()),
            grad_norm=float(grad_norm),
            mean_ratio=float((ratio * weight).sum() / n_free),
            temperature=temperature,
        )

    def _track_reward_scale(self, rewards: npt.NDArray[np.float64]) -> None:
        """Fold this batch's reward standard deviation into the moving average (a batch
        without spread, before any had one, leaves it unset)."""
        spread = float(np.std(rewards, ddof=1)) if rewards.size > 1 else 0.0
        if math.isnan(self.reward_scale):
            if spread > 0:
                self.reward_scale = spread
            return
        m = self.config.baseline_momentum
        self.reward_scale = m * self.reward_scale + (1 - m) * spread

    def _queries(self, batch: Sequence[Episode]) -> torch.Tensor:
        """``[B, dim]`` query embeddings: carried by the episode if its embedder is ours."""
        name, dim = self.embedder.name, self.embedder.dim
        out = np.empty((len(batch), dim), dtype=np.float32)
        missing: list[int] = []
        for i, episode in enumerate(batch):
            vector = (
                unpack_embedding(episode.query_embedding, dim) if episode.embedder == name else None
            )
            if vector is None:
                missing.append(i)
            else:
                out[i] = vector
        if missing:
            texts = [batch[i].query_text for i in missing]
            out[missing] = self.embedder.embed(texts).numpy()
        self.carried += len(batch) - len(missing)
        self.embedded += len(missing)
        return torch.from_numpy(out)

    def state_dict(self) -> dict[str, Any]:
        """Trainer state beside the policy weights (optimizer, baseline, step), for resuming."""
        return {
            "step": self.step,
            "baseline": self.baseline.tolist(),
            "reward_scale": self.reward_scale,
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.step = int(state["step"])
        self.baseline = np.array(state["baseline"], dtype=np.float64)
        self.reward_scale = float(state.get("reward_scale", math.nan))
        self.optimizer.load_state_dict(state["optimizer"])
