"""The trainer's hyper-parameters a user sets: the defaults, and how they reach the learner.

One record, :class:`Hyper`, is what ``hieramas learner`` and ``hieramas train`` expose
as options (``--entropy-coef``, ``--lr``, ``--temp-start``, ``--temp-end``,
``--temp-updates``, ``--slot-actions``, ``--group``, ``--synthesizer-skip``,
``--proposer-skip``, ``--advantage-scale``, ``--kind-columns``, ``--distinct-proposers``,
``--dropped-credit``); the training driver hands it to its learner process as those
options (:meth:`Hyper.args`), and the learner's trainer records it in every checkpoint's
``hyper`` metadata.  torch-free, so the CLI can read the defaults without loading it.

``LEGACY`` is what runs made before these options existed were trained with: a run
directory whose saved identity lacks a field is taken to have used that value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from hieramas.learner.rewards import DroppedCredit
from hieramas.learner.slots import SlotOptions

__all__ = ["LEGACY", "AdvantageScale", "Hyper"]

AdvantageScale = Literal["batch", "running"]


@dataclass(frozen=True, slots=True)
class Hyper:
    """REINFORCE settings beside the reward's α and λ (see :mod:`.reinforce`)."""

    entropy_coef: float = 0.01
    """β, the weight of the entropy bonus (the paper's code used 1.0)."""
    lr: float = 3e-3
    """Adam's learning rate."""
    temp_start: float = 3.0
    """Sampling temperature of the first update's queries."""
    temp_end: float = 0.8
    """... and after ``temp_updates`` updates (cosine in between, then constant)."""
    temp_updates: int = 100
    """Updates the temperature takes to decay from ``temp_start`` to ``temp_end``."""
    slot_actions: bool = False
    """Give the policy a learned preference of each slot for each action, so that slots
    can prefer different LLMs (see :class:`~hieramas.learner.policy.PolicyNet`)."""
    group: int = 1
    """Training queries per train item: the driver asks each item this many times in a
    row, and the trainer's baseline for an episode is the mean reward of the same item's
    other episodes in its batch (see :mod:`~hieramas.learner.reinforce`).  1: every
    query a new item, the moving-average baseline."""
    kind_columns: bool = False
    """Give synthesizer slots their own LLM scores, apart from the proposers' (see
    :class:`~hieramas.learner.policy.PolicyNet`)."""
    advantage_scale: AdvantageScale = "batch"
    """How the advantages are scaled: by each batch's standard deviation, or by a moving
    average of it over batches (see :mod:`~hieramas.learner.reinforce`)."""
    synthesizer_skip: bool = True
    """Whether a synthesizer slot may pick ``skip``, dropping its supernode.  Off, every
    supernode of the layout runs (the masks keep at least one answering supernode either
    way; see :class:`~hieramas.learner.slots.SlotOptions`)."""
    proposer_skip: bool = True
    """Whether a proposer slot may pick ``skip``.  Off, every proposer slot of an active
    supernode answers, so the policy chooses which LLMs make its ``--proposers`` samples
    but not how many (see :class:`~hieramas.learner.slots.SlotOptions`)."""
    distinct_proposers: bool = False
    """Whether the proposers of one supernode must call different LLMs (sampled and
    decoded alike; see :mod:`~hieramas.learner.masks`)."""
    dropped_credit: DroppedCredit = "final"
    """How a dropped answering supernode's slots are credited under multi-level rewards:
    with ``R`` alone, or with its running peers' own rewards beside ``R`` (see
    :mod:`~hieramas.learner.rewards`)."""

    def __post_init__(self) -> None:
        if self.entropy_coef < 0:
            raise ValueError("the entropy coefficient must be non-negative")
        if self.lr <= 0:
            raise ValueError("the learning rate must be positive")
        if self.temp_start <= 0 or self.temp_end <= 0:
            raise ValueError("temperatures must be positive")
        if self.temp_updates < 1:
            raise ValueError("the temperature schedule takes at least one update")
        if self.group < 1:
            raise ValueError("the group size is at least 1")
        if self.dropped_credit not in get_args(DroppedCredit):
            raise ValueError(f"dropped credit must be final or peers, not {self.dropped_credit!r}")
        if self.advantage_scale not in ("batch", "running"):
            raise ValueError(
                f"advantage scale must be batch or running, not {self.advantage_scale!r}"
            )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready map (a run's identity, its ``run.json``)."""
        return asdict(self)

    def slot_options(self) -> SlotOptions:
        """The optional actions a new policy's layout gets from these settings."""
        return SlotOptions(
            synthesizer_skip=self.synthesizer_skip,
            proposer_skip=self.proposer_skip,
            distinct_proposers=self.distinct_proposers,
        )

    def args(self) -> list[str]:
        """The same settings as ``hieramas learner`` options."""
        return [
            "--entropy-coef", repr(self.entropy_coef), "--lr", repr(self.lr),
            "--temp-start", repr(self.temp_start), "--temp-end", repr(self.temp_end),
            "--temp-updates", str(self.temp_updates),
            "--slot-actions" if self.slot_actions else "--no-slot-actions",
            "--group", str(self.group),
            "--synthesizer-skip" if self.synthesizer_skip else "--no-synthesizer-skip",
            "--proposer-skip" if self.proposer_skip else "--no-proposer-skip",
            "--advantage-scale", self.advantage_scale,
            "--kind-columns" if self.kind_columns else "--no-kind-columns",
            "--distinct-proposers" if self.distinct_proposers else "--no-distinct-proposers",
            "--dropped-credit", self.dropped_credit,
        ]  # fmt: skip


LEGACY = Hyper()
"""The settings every run used before they were options (the defaults until then)."""
