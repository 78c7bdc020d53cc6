"""The policy's action space: which slots a config has, which actions each may take.

A *slot* is one choice the Stage-1 policy makes per query: a proposer position or
the synthesizer of a supernode, and optionally the decision LLM.  An *action* is a
column of the action vocabulary: ``skip``, ``vote``, ``pass`` and the pool LLMs in
config order.  A :class:`SlotLayout` is derived from a config and fixes both, in a
fixed order; everything else (masks, logits, stored actions, rewards) is indexed
by it.

Slot order: supernodes in config order; within one, the **synthesizer first** and
then its proposers.  Deciding the synthesizer first makes a dropped supernode
(synthesizer ``skip``) force its proposers to ``skip``: they are not sampled at
all, so they carry no log-probability and no gradient noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from hieramas.controller.config import PASS, SKIP, VOTE, HieraConfig
from hieramas.controller.planner import Assignment

__all__ = [
    "PSEUDO_ACTIONS",
    "LayoutError",
    "Slot",
    "SlotAssignment",
    "SlotKind",
    "SlotLayout",
    "SlotOptions",
]

SlotKind = Literal["proposer", "synthesizer", "decision"]
_T = TypeVar("_T")

PSEUDO_ACTIONS: tuple[str, ...] = (SKIP, VOTE, PASS)
"""The call-free actions; they head the action vocabulary in this order."""


class LayoutError(ValueError):
    """An assignment or action sequence that does not fit the layout."""


@dataclass(frozen=True, slots=True)
class SlotOptions:
    """Which optional actions and slots the policy has.

    ``synthesizer_skip``: a synthesizer may pick ``skip`` (drops its supernode); the
    masks still keep at least one answering supernode.  ``pseudo_synthesizers``: a
    synthesizer may pick ``vote``/``pass`` (call-free choices among its proposals;
    ``vote`` only for roles that give answers).  ``proposer_skip``: a proposer may
    pick ``skip``.  ``distinct_proposers``: the proposers of one supernode call
    different LLMs (the paper's heterogeneous mixture; repeats only once every LLM
    has one).  ``decision_slot``: the decision LLM is a slot too (off by default:
    the controller's :class:`Assignment` cannot carry it yet, and the paper keeps it
    fixed).
    """

    synthesizer_skip: bool = True
    pseudo_synthesizers: bool = True
    proposer_skip: bool = True
    decision_slot: bool = False
    distinct_proposers: bool = False

    def to_json(self) -> dict[str, bool]:
        """A JSON-ready map (``distinct_proposers`` only when on: the layouts of policies
        made before it existed keep their key)."""
        out = {
            "synthesizer_skip": self.synthesizer_skip,
            "pseudo_synthesizers": self.pseudo_synthesizers,
            "proposer_skip": self.proposer_skip,
            "decision_slot": self.decision_slot,
        }
        if self.distinct_proposers:
            out["distinct_proposers"] = True
        return out


@dataclass(frozen=True, slots=True)
class Slot:
    """One choice: ``kind`` of slot ``index`` (proposer position) of supernode ``node``.

    The decision slot has ``node == "decision"`` and ``role == "Decision"``.
    """

    node: str
    role: str
    kind: SlotKind
    index: int = 0

    @property
    def position(self) -> str:
        """The slot-position token (``p0``, ``p1``, …, ``synth``, ``decision``)."""
        return f"p{self.index}" if self.kind == "proposer" else self.kind


@dataclass(frozen=True, slots=True)
class SlotAssignment:
    """One query's per-slot LLM choices (``skip``/``vote``/``pass`` included)."""

    proposers: Mapping[str, tuple[str, ...]]
    synthesizers: Mapping[str, str]
    decision: str

    def to_assignment(self, edges: Sequence[tuple[str, str]]) -> Assignment:
        """The controller's :class:`Assignment` (the decision LLM is not part of it)."""
        return Assignment(
            proposers={n: list(p) for n, p in self.proposers.items()},
            synthesizers=dict(self.synthesizers),
            edges=list(edges),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON/msgpack-ready map."""
        return {
            "proposers": {n: list(p) for n, p in self.proposers.items()},
            "synthesizers": dict(self.synthesizers),
            "decision": self.decision,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SlotAssignment:
        """Inverse of :meth:`to_json`; ``KeyError``/``TypeError`` when malformed."""
        return cls(
            proposers={str(n): tuple(str(x) for x in p) for n, p in data["proposers"].items()},
            synthesizers={str(n): str(s) for n, s in data["synthesizers"].items()},
            decision=str(data["decision"]),
        )


@dataclass(frozen=True)
class SlotLayout:
    """The slots and action vocabulary of one config, in the policy's fixed order.

    ``answerless`` names the roles whose output carries no gradable answer (reward
    α = 0, never counted as the one answering role that must stay active).
    """

    slots: tuple[Slot, ...]
    actions: tuple[str, ...]
    answerless: frozenset[str]
    options: SlotOptions
    default_decision: str
    _action_index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.actions[: len(PSEUDO_ACTIONS)] != PSEUDO_ACTIONS:
            raise LayoutError(f"the action vocabulary must start with {PSEUDO_ACTIONS}")
        if len(set(self.actions)) != len(self.actions):
            raise LayoutError("duplicate action names")
        object.__setattr__(self, "_action_index", {a: i for i, a in enumerate(self.actions)})

    @classmethod
    def from_config(
        cls,
        config: HieraConfig,
        *,
        answerless: frozenset[str] | set[str] | None = None,
        options: SlotOptions | None = None,
    ) -> SlotLayout:
        """The layout of ``config``; ``answerless`` defaults to the task catalogue's roles."""
        opts = options or SlotOptions()
        if answerless is None:
            answerless = _catalogue_answerless(config.domain)
        slots: list[Slot] = []
        for name, spec in config.supernodes.items():
            slots.append(Slot(name, spec.role, "synthesizer"))
            slots.extend(Slot(name, spec.role, "proposer", i) for i in range(len(spec.proposers)))
        if opts.decision_slot:
            slots.append(Slot("decision", "Decision", "decision"))
        return cls(
            slots=tuple(slots),
            actions=(*PSEUDO_ACTIONS, *config.llms),
            answerless=frozenset(answerless),
            options=opts,
            default_decision=config.decision,
        )

    @property
    def llms(self) -> tuple[str, ...]:
        """The real LLMs of the vocabulary (no pseudo actions)."""
        return self.actions[len(PSEUDO_ACTIONS) :]

    @property
    def roles(self) -> tuple[str, ...]:
        """Distinct roles of the slots, in slot order."""
        return tuple(dict.fromkeys(s.role for s in self.slots))

    @property
    def positions(self) -> tuple[str, ...]:
        """Distinct slot-position tokens, in slot order."""
        return tuple(dict.fromkeys(s.position for s in self.slots))

    @property
    def nodes(self) -> tuple[str, ...]:
        """Supernode ids in layout order (the decision slot excluded)."""
        return tuple(dict.fromkeys(s.node for s in self.slots if s.kind != "decision"))

    def action_index(self, name: str) -> int:
        """Column of action ``name``; :class:`LayoutError` when unknown."""
        try:
            return self._action_index[name]
        except KeyError:
            raise LayoutError(f"unknown action {name!r}") from None

    def answering(self, slot: Slot) -> bool:
        """Whether ``slot`` belongs to a supernode whose role gives an answer."""
        return slot.kind != "decision" and slot.role not in self.answerless

    def encode(self, assignment: SlotAssignment) -> tuple[int, ...]:
        """The action index of every slot; :class:`LayoutError` if it does not fit."""
        out: list[int] = []
        for slot in self.slots:
            if slot.kind == "decision":
                name = assignment.decision
            elif slot.kind == "synthesizer":
                name = _get(assignment.synthesizers, slot.node)
            else:
                props = _get(assignment.proposers, slot.node)
                if len(props) <= slot.index:
                    raise LayoutError(f"{slot.node}: no proposer slot {slot.index}")
                name = props[slot.index]
            out.append(self.action_index(name))
        return tuple(out)

    def decode(self, actions: Sequence[int]) -> SlotAssignment:
        """The assignment of an action sequence (one index per slot)."""
        if len(actions) != len(self.slots):
            raise LayoutError(f"expected {len(self.slots)} actions, got {len(actions)}")
        proposers: dict[str, list[str]] = {}
        synthesizers: dict[str, str] = {}
        decision = self.default_decision
        for slot, a in zip(self.slots, actions, strict=True):
            name = self.actions[a]
            if slot.kind == "decision":
                decision = name
            elif slot.kind == "synthesizer":
                synthesizers[slot.node] = name
            else:
                proposers.setdefault(slot.node, []).append(name)
        return SlotAssignment(
            proposers={n: tuple(p) for n, p in proposers.items()},
            synthesizers=synthesizers,
            decision=decision,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (stored in checkpoints to check compatibility)."""
        return {
            "slots": [[s.node, s.role, s.kind, s.index] for s in self.slots],
            "actions": list(self.actions),
            "answerless": sorted(self.answerless),
            "options": self.options.to_json(),
            "default_decision": self.default_decision,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SlotLayout:
        """Inverse of :meth:`to_json`; ``KeyError``/``TypeError``/``ValueError`` when malformed."""
        slots = tuple(
            Slot(str(node), str(role), _kind(kind), int(index))
            for node, role, kind, index in data["slots"]
        )
        return cls(
            slots=slots,
            actions=tuple(str(a) for a in data["actions"]),
            answerless=frozenset(str(r) for r in data["answerless"]),
            options=SlotOptions(**{k: bool(v) for k, v in data["options"].items()}),
            default_decision=str(data["default_decision"]),
        )


def _kind(value: object) -> SlotKind:
    if value == "proposer":
        return "proposer"
    if value == "synthesizer":
        return "synthesizer"
    if value == "decision":
        return "decision"
    raise ValueError(f"unknown slot kind {value!r}")


def _get(mapping: Mapping[str, _T], node: str) -> _T:
    try:
        return mapping[node]
    except KeyError:
        raise LayoutError(f"the assignment has no supernode {node!r}") from None


def _catalogue_answerless(domain: str) -> frozenset[str]:
    try:
        from hieramas.tasks.prompts import answerless_roles
    except ImportError:  # the task catalogue is optional for the learner core
        return frozenset()
    try:
        return frozenset(answerless_roles(domain))
    except (KeyError, ValueError):
        return frozenset()
