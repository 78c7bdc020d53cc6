"""Role skipping (Stage 2, as in the paper): drop up to ``k`` answering supernodes whose
synthesizer slot leans to ``skip``, keeping at least one answering supernode.

A supernode "leans to skip" when the Stage-1 policy gives ``skip`` more than a uniform
share (``1 / actions``) of its synthesizer slot's softmax (unmasked logits, temperature 1):
the policy would rather drop it than pick at random.  Of those, the ``k`` with the highest
``skip`` probability are dropped.  Only the synthesizer's action changes (to ``skip``); a
dropped supernode's proposers do not run, as ``build_plan`` drops the node.  A policy
trained without synthesizer skips (``--no-synthesizer-skip``) never learned its ``skip``
scores, so it drops nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hieramas.controller.config import SKIP
from hieramas.learner.policy import Policy

__all__ = ["skip_roles"]


def skip_roles(
    policy: Policy, query: torch.Tensor, actions: Sequence[int], k: int
) -> tuple[int, ...]:
    """``actions`` with up to ``k`` more answering supernodes skipped (see the module doc)."""
    acts = [int(a) for a in actions]
    layout = policy.layout
    if k <= 0 or not layout.options.synthesizer_skip:
        return tuple(acts)
    skip = layout.action_index(SKIP)
    running = [
        s
        for s, slot in enumerate(layout.slots)
        if slot.kind == "synthesizer" and layout.answering(slot) and acts[s] != skip
    ]
    if len(running) <= 1:
        return tuple(acts)
    with torch.inference_mode():
        logits = policy.net(query.reshape(1, -1))[0].double().numpy()
    rows = logits[running]
    probs = np.exp(rows - rows.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    p_skip = probs[:, skip]
    order = np.argsort(-p_skip, kind="stable")
    leaning = [running[i] for i in order if p_skip[i] > 1.0 / rows.shape[1]]
    for s in leaning[: min(k, len(running) - 1)]:
        acts[s] = skip
    return tuple(acts)
