"""Which actions each slot may take, given the actions already taken (sequential masks).

The joint distribution over a query's slots is a chain: slots are decided in the
layout's fixed order, each from ``softmax(logits / T)`` restricted to the mask that
the actions before it leave.  Sampling, greedy decoding and the training
log-probabilities all walk the same chain through :class:`MaskWalker`, so a stored
action sequence has exactly the log-probability it was sampled with.

Rules (``SlotOptions`` switches the optional ones):

- a proposer takes any LLM, or ``skip`` if proposer skips are enabled;
- a proposer of a dropped supernode (synthesizer ``skip``) is forced to ``skip``;
- with distinct proposers, a proposer may not take an LLM an earlier proposer of its
  supernode took (unless every LLM is taken);
- under a ``vote``/``pass`` synthesizer (which chooses among proposals), the last
  proposer may not skip when every earlier one did;
- a synthesizer takes any LLM; ``pass`` and (for answering roles) ``vote`` if pseudo
  synthesizers are enabled; ``skip`` if synthesizer skips are enabled, except for
  the last answering synthesizer when every earlier answering one skipped, so at
  least one answering supernode stays active;
- the decision slot takes any LLM or ``vote``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from hieramas.controller.config import PASS, SKIP, VOTE
from hieramas.learner.slots import LayoutError, SlotLayout

__all__ = ["BoolArray", "MaskRules", "MaskWalker"]

BoolArray = npt.NDArray[np.bool_]


class MaskRules:
    """The masks of one layout, precomputed: per slot, the few arrays it can get."""

    def __init__(self, layout: SlotLayout) -> None:
        self.layout = layout
        n_actions = len(layout.actions)
        if not layout.llms:
            raise LayoutError("the action vocabulary has no LLM")
        opts = layout.options
        skip, vote, pas = (layout.action_index(a) for a in (SKIP, VOTE, PASS))

        def make(*, llms: bool, extra: Sequence[int] = ()) -> BoolArray:
            m = np.zeros(n_actions, dtype=np.bool_)
            if llms:
                m[len(layout.actions) - len(layout.llms) :] = True
            m[list(extra)] = True
            m.setflags(write=False)
            return m

        self._skip, self._vote, self._pass = skip, vote, pas
        self.distinct = opts.distinct_proposers
        self._first_llm = len(layout.actions) - len(layout.llms)
        self.forced_skip = make(llms=False, extra=[skip])
        self._free: list[BoolArray] = []  # the mask when no constraint binds
        self._strict: list[BoolArray] = []  # the mask when the slot may not skip
        self._synth_of: list[int] = []  # proposer -> its synthesizer slot (else -1)
        self._last_proposer: list[bool] = []
        self._last_answering_synth = -1
        synth_slot: dict[str, int] = {}
        for i, slot in enumerate(layout.slots):
            if slot.kind == "decision":
                free = make(llms=True, extra=[vote])
                strict = free
            elif slot.kind == "synthesizer":
                synth_slot[slot.node] = i
                pseudo = []
                if opts.pseudo_synthesizers:
                    pseudo = [pas, vote] if layout.answering(slot) else [pas]
                strict = make(llms=True, extra=pseudo)
                free = make(llms=True, extra=[*pseudo, skip]) if opts.synthesizer_skip else strict
                if layout.answering(slot):
                    self._last_answering_synth = i
            else:
                strict = make(llms=True)
                free = make(llms=True, extra=[skip]) if opts.proposer_skip else strict
            self._free.append(free)
            self._strict.append(strict)
            self._synth_of.append(synth_slot[slot.node] if slot.kind == "proposer" else -1)
            nxt = layout.slots[i + 1] if i + 1 < len(layout.slots) else None
            self._last_proposer.append(
                slot.kind == "proposer"
                and (nxt is None or nxt.node != slot.node or nxt.kind != "proposer")
            )
        self._answering_synth = [
            s.kind == "synthesizer" and layout.answering(s) for s in layout.slots
        ]

    def start(self) -> MaskWalker:
        """A walker at the first slot."""
        return MaskWalker(self)

    def masks(self, actions: Sequence[int]) -> BoolArray:
        """The ``[slots, actions]`` masks a whole action sequence was chosen under.

        :class:`LayoutError` if some action is not allowed where it stands.
        """
        walker = self.start()
        out = np.empty((len(actions), len(self.layout.actions)), dtype=np.bool_)
        for i, a in enumerate(actions):
            out[i] = walker.mask()
            walker.push(int(a))
        return out


class MaskWalker:
    """Steps through the slots in order: :meth:`mask` for the next slot, then :meth:`push`."""

    __slots__ = ("_actions", "_all_answering_skipped", "_props_skipped", "_rules", "_taken")

    def __init__(self, rules: MaskRules) -> None:
        self._rules = rules
        self._actions: list[int] = []
        self._all_answering_skipped = True
        self._props_skipped = True  # every proposer of the current supernode so far
        self._taken: list[int] = []  # the LLMs its proposers took so far (distinct proposers)

    @property
    def slot(self) -> int:
        """Index of the next slot."""
        return len(self._actions)

    def mask(self) -> BoolArray:
        """The allowed actions of the next slot (read-only array)."""
        r, i = self._rules, len(self._actions)
        synth = r._synth_of[i]
        if synth >= 0:  # a proposer
            chosen = self._actions[synth]
            if chosen == r._skip:
                return r.forced_skip
            if chosen in (r._vote, r._pass) and r._last_proposer[i] and self._props_skipped:
                return self._distinct(r._strict[i])
            return self._distinct(r._free[i])
        if i == r._last_answering_synth and self._all_answering_skipped:
            return r._strict[i]
        return r._free[i]

    def _distinct(self, mask: BoolArray) -> BoolArray:
        """``mask`` without the LLMs the supernode's earlier proposers took, unless that
        would leave it no LLM."""
        if not self._taken:
            return mask
        out = mask.copy()
        out[self._taken] = False
        if not out[self._rules._first_llm :].any():
            return mask
        out.setflags(write=False)
        return out

    def push(self, action: int) -> None:
        """Take ``action`` at the next slot; :class:`LayoutError` if it is not allowed."""
        r, i = self._rules, len(self._actions)
        if i >= len(r._free):
            raise LayoutError("more actions than slots")
        if not self.mask()[action]:
            slot = r.layout.slots[i]
            raise LayoutError(
                f"{slot.node}.{slot.position}: action {r.layout.actions[action]!r} is not allowed"
            )
        if r._synth_of[i] >= 0:
            self._props_skipped = self._props_skipped and action == r._skip
            if r.distinct and action >= r._first_llm:
                self._taken.append(action)
        else:
            self._props_skipped = True  # a synthesizer opens a new supernode
            self._taken = []
            if r._answering_synth[i] and action != r._skip:
                self._all_answering_skipped = False
        self._actions.append(action)
