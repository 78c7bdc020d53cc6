"""The Stage-1 policy: a logit for every (slot, action) pair of a query, and decoding.

Shapes: ``B`` queries, ``S`` slots, ``A`` actions, ``d`` embedding size, ``H`` hidden.

:class:`PolicyNet` (``nn.Module``) scores pairs::

    row[b, s] = MLP(W_q·query[b] + W_r·role_text[role(s)] + pos[position(s)])    [B, S, H]
    col[a]    = MLP(W_a·[profile_text[a], price[a]] + id[a])                      [A, H]
    logit[b, s, a] = v · GELU(U_r·row[b, s] + U_c·col[a]) (+ slot_action[s, a])    [B, S, A]

The role and action texts are embedded once when the policy is created and kept
as buffers, so a checkpoint needs no embedder to rebuild them; only the query is
embedded per query.  ``v`` starts at zero: a fresh policy is uniform.

``slot_actions=True`` adds ``slot_action [S, A]``, a learned preference of each slot
for each action (zero at the start).  Without it every slot scores an LLM through the
same column term, which dominates the slot's row term, so a greedy plan puts one LLM
in every slot; with it each slot can come to prefer its own LLM, and a greedy plan
can be a mixture.  A checkpoint that carries the tensor rebuilds with it.

``kind_columns=True`` gives the synthesizer and decision slots their own ``U_c``
(``synth_col``): without it, the credit that moves an LLM's column for the proposer
slots moves it for the synthesizer too, and a synthesizer follows its proposers onto
that LLM even where a call-free ``vote`` scores better.  It starts as a copy of the
shared ``U_c``, so a fresh policy is the same (uniform); a checkpoint that carries it
rebuilds with it.

:class:`Policy` binds the net to a :class:`SlotLayout` and its masks and decides
one query: greedy, the paper's top-n rotation, or sampling from
``softmax(logits / T)`` under the sequential masks of :mod:`.masks`.
:meth:`Policy.log_probs` recomputes, in torch and batched, the log-probabilities of
stored actions under the same masks and temperature: sampling and training see
one distribution (up to float32 rounding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from hieramas.controller.config import SKIP, HieraConfig
from hieramas.learner.embeddings import TextEmbedder
from hieramas.learner.masks import BoolArray, MaskRules
from hieramas.learner.profiles import PRICE_FEATURES, action_profiles, price_features, role_texts
from hieramas.learner.slots import SlotAssignment, SlotLayout

__all__ = [
    "MASKED_LOGIT",
    "Decision",
    "DecodeMode",
    "Policy",
    "PolicyNet",
]

DecodeMode = Literal["greedy", "rotation", "sample"]

SLOT_ACTION_GAIN = 1.0
"""Scale of the per-slot preferences: Adam moves each parameter by about the learning
rate per update, and a bias alone needs larger steps than the shared net's many
weights to make a slot differ (measured on the toy bandits of tests/learner)."""

MASKED_LOGIT = -1e9
"""The logit a masked action gets (finite, so 0·log 0 terms stay 0 in gradients)."""


class PolicyNet(nn.Module):
    """Scores every (slot, action) pair of one layout; see the module docstring."""

    role_text: torch.Tensor
    action_text: torch.Tensor
    action_price: torch.Tensor
    slot_role: torch.Tensor
    slot_pos: torch.Tensor
    slot_is_proposer: torch.Tensor

    def __init__(
        self,
        layout: SlotLayout,
        dim: int,
        hidden: int = 64,
        *,
        slot_actions: bool = False,
        kind_columns: bool = False,
    ) -> None:
        super().__init__()
        roles, positions = layout.roles, layout.positions
        n_actions = len(layout.actions)
        self.dim, self.hidden, self.slot_actions = dim, hidden, slot_actions
        self.kind_columns = kind_columns
        # filled by Policy.create (or by load_state_dict from a checkpoint)
        self.register_buffer("role_text", torch.zeros(len(roles), dim))
        self.register_buffer("action_text", torch.zeros(n_actions, dim))
        self.register_buffer("action_price", torch.zeros(n_actions, PRICE_FEATURES))
        self.register_buffer(
            "slot_role", torch.tensor([roles.index(s.role) for s in layout.slots]), persistent=False
        )
        self.register_buffer(
            "slot_pos",
            torch.tensor([positions.index(s.position) for s in layout.slots]),
            persistent=False,
        )
        self.query_proj = nn.Linear(dim, hidden)
        self.role_proj = nn.Linear(dim, hidden, bias=False)
        self.pos = nn.Embedding(len(positions), hidden)
        self.row_mlp = nn.Sequential(nn.GELU(), nn.Linear(hidden, hidden))
        self.action_proj = nn.Linear(dim + PRICE_FEATURES, hidden)
        self.action_id = nn.Embedding(n_actions, hidden)
        self.col_mlp = nn.Sequential(nn.GELU(), nn.Linear(hidden, hidden))
        self.pair_row = nn.Linear(hidden, hidden)
        self.pair_col = nn.Linear(hidden, hidden, bias=False)
        self.score = nn.Linear(hidden, 1)
        nn.init.normal_(self.pos.weight, std=0.1)
        nn.init.normal_(self.action_id.weight, std=0.1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)
        self.slot_action: nn.Parameter | None = (
            nn.Parameter(torch.zeros(len(layout.slots), n_actions)) if slot_actions else None
        )
        self.synth_col: nn.Linear | None = None
        if kind_columns:
            self.synth_col = nn.Linear(hidden, hidden, bias=False)
            self.synth_col.weight.data.copy_(self.pair_col.weight.data)
            self.register_buffer(
                "slot_is_proposer",
                torch.tensor([s.kind == "proposer" for s in layout.slots]),
                persistent=False,
            )

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        """``query [B, d]`` → logits ``[B, S, A]`` (unmasked, temperature 1)."""
        slot_static = self.role_proj(self.role_text)[self.slot_role] + self.pos(self.slot_pos)
        row = self.row_mlp(self.query_proj(query)[:, None, :] + slot_static[None])  # [B, S, H]
        col = self.col_mlp(
            self.action_proj(torch.cat([self.action_text, self.action_price], dim=1))
            + self.action_id.weight
        )  # [A, H]
        cols = self.pair_col(col)[None]  # [1, A, H]: every slot's
        if self.synth_col is not None:  # [S, A, H]: the proposers' or the synthesizers'
            cols = torch.where(
                self.slot_is_proposer[:, None, None], cols, self.synth_col(col)[None]
            )
        pair = self.pair_row(row)[:, :, None, :] + cols[None]  # [B, S, A, H]
        logits: torch.Tensor = self.score(nn.functional.gelu(pair)).squeeze(-1)
        if self.slot_action is not None:
            logits = logits + SLOT_ACTION_GAIN * self.slot_action[None]
        return logits


@dataclass(frozen=True, slots=True)
class Decision:
    """One query's choices: an action per slot and how they were chosen.

    ``slot_log_probs[s]`` is the log-probability of slot ``s``'s action under its mask
    in ``softmax(logits / temperature)`` (0 for a forced slot).  Only ``explore``
    decisions were sampled from that distribution; greedy and rotation report it
    for information.
    """

    actions: tuple[int, ...]
    slot_log_probs: tuple[float, ...]
    temperature: float
    mode: DecodeMode

    @property
    def explore(self) -> bool:
        """Whether the actions were sampled (usable as a REINFORCE episode)."""
        return self.mode == "sample"

    @property
    def log_prob(self) -> float:
        """Log-probability of the whole action sequence."""
        return float(sum(self.slot_log_probs))


class Policy:
    """A :class:`PolicyNet` bound to its layout and masks: decide queries, score actions.

    Not thread-safe while training: plan from a copy (:meth:`snapshot`) or one thread.
    """

    def __init__(self, layout: SlotLayout, net: PolicyNet, *, rotation_n: int = 3) -> None:
        self.layout = layout
        self.net = net
        self.rules = MaskRules(layout)
        self.rotation_n = rotation_n
        self._skip = layout.action_index(SKIP)

    @classmethod
    def create(
        cls,
        config: HieraConfig,
        embedder: TextEmbedder,
        *,
        layout: SlotLayout | None = None,
        hidden: int = 64,
        seed: int = 0,
        rotation_n: int = 3,
        slot_actions: bool = False,
        kind_columns: bool = False,
    ) -> Policy:
        """A fresh (uniform) policy for ``config``; role and LLM texts embedded now."""
        layout = layout or SlotLayout.from_config(config)
        with torch.random.fork_rng():  # seeded weights without touching the caller's RNG
            torch.manual_seed(seed)
            net = PolicyNet(
                layout, embedder.dim, hidden, slot_actions=slot_actions, kind_columns=kind_columns
            )
        with torch.no_grad():
            net.role_text.copy_(embedder.embed(role_texts(layout, config.domain)))
            net.action_text.copy_(embedder.embed(action_profiles(config, layout)))
            net.action_price.copy_(price_features(config, layout))
        return cls(layout, net, rotation_n=rotation_n)

    def snapshot(self) -> Policy:
        """An independent copy for planning (its net in eval mode, no gradients)."""
        net = PolicyNet(
            self.layout,
            self.net.dim,
            self.net.hidden,
            slot_actions=self.net.slot_actions,
            kind_columns=self.net.kind_columns,
        )
        net.load_state_dict(self.net.state_dict())
        net.eval().requires_grad_(False)
        return Policy(self.layout, net, rotation_n=self.rotation_n)

    # -- deciding one query -------------------------------------------------------------

    def decide(
        self,
        query: torch.Tensor,
        mode: DecodeMode = "greedy",
        *,
        temperature: float = 1.0,
        rng: np.random.Generator | None = None,
    ) -> Decision:
        """Choose every slot's action for one query embedding ``[d]``.

        ``sample`` draws from ``softmax(logits / temperature)`` under the sequential
        masks (``rng`` required); ``greedy`` takes each slot's best allowed action;
        ``rotation`` takes each synthesizer's best, and hands the top-``rotation_n``
        actions of a supernode's first proposer position to its proposers round-robin.
        """
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        if mode == "sample" and rng is None:
            raise ValueError("sampling needs an rng")
        with torch.inference_mode():
            logits = self.net(query.reshape(1, -1))[0].double().numpy() / temperature
        return self.decide_logits(logits, mode, temperature=temperature, rng=rng)

    def decide_logits(
        self,
        logits: npt.NDArray[np.float64],
        mode: DecodeMode,
        *,
        temperature: float,
        rng: np.random.Generator | None = None,
    ) -> Decision:
        """:meth:`decide` from precomputed ``logits / temperature`` ``[S, A]``."""
        walker = self.rules.start()
        actions: list[int] = []
        logps: list[float] = []
        rotation: list[int] = []
        for s, slot in enumerate(self.layout.slots):
            mask = walker.mask()
            row = np.where(mask, logits[s], MASKED_LOGIT)
            top = row.max()
            log_z = top + math.log(np.exp(row - top).sum())
            if mode == "sample":
                assert rng is not None
                # inverse CDF of the masked softmax: one uniform draw per slot
                cdf = np.cumsum(np.exp(row - log_z))
                a = int(
                    min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(cdf) - 1)
                )
                while not mask[a]:  # a float tie at a masked column's edge: step back
                    a -= 1
            elif mode == "rotation" and slot.kind == "proposer" and mask.sum() > 1:
                if slot.index == 0 or not rotation:
                    order = np.argsort(-row, kind="stable")
                    rotation = [int(x) for x in order[: self.rotation_n] if mask[x]]
                a = rotation[slot.index % len(rotation)]
                if not mask[a]:
                    a = int(row.argmax())
            else:
                a = int(row.argmax())
            actions.append(a)
            logps.append(float(row[a] - log_z))
            walker.push(a)
        return Decision(tuple(actions), tuple(logps), temperature, mode)

    def assignment(self, decision: Decision) -> SlotAssignment:
        """The per-slot LLM names of ``decision``."""
        return self.layout.decode(decision.actions)

    # -- training -----------------------------------------------------------------------

    def masks(self, actions: Sequence[Sequence[int]]) -> torch.Tensor:
        """Bool ``[B, S, A]``: the masks each stored action sequence was chosen under."""
        stacked: list[BoolArray] = [self.rules.masks(a) for a in actions]
        return torch.from_numpy(np.stack(stacked))

    def log_probs(
        self,
        logits: torch.Tensor,
        actions: torch.Tensor,
        masks: torch.Tensor,
        temperature: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-slot log-probabilities of ``actions`` and entropies, both ``[B, S]``.

        ``logits [B, S, A]`` from :class:`PolicyNet`; ``actions [B, S]`` (long);
        ``masks [B, S, A]`` (bool); ``temperature [B]``: each episode's own.
        """
        scaled = logits / temperature[:, None, None]
        logp_all = torch.log_softmax(scaled.masked_fill(~masks, MASKED_LOGIT), dim=-1)
        logp = logp_all.gather(-1, actions[..., None]).squeeze(-1)
        p = logp_all.exp()
        entropy = -(p * logp_all).masked_fill(~masks, 0.0).sum(-1)
        return logp, entropy
