"""The texts and numeric features that describe roles and actions to the policy.

A role is described by its name and, when the task catalogue knows it, its
one-paragraph description.  An action (an LLM of the pool, or ``skip``/``vote``/
``pass``) by a short profile built from the config (name, model id, prices) and
by numeric price features, so that two LLMs with similar names but different
prices are told apart.
"""

from __future__ import annotations

import math

import torch

from hieramas.controller.config import PASS, SKIP, VOTE, HieraConfig
from hieramas.learner.slots import SlotLayout

__all__ = ["PRICE_FEATURES", "action_profiles", "price_features", "role_texts"]

PRICE_FEATURES = 3
"""Numeric features per action: log1p of $/M prompt and completion tokens, call-free flag."""

_PSEUDO_TEXT = {
    SKIP: "skip: no call; the slot is left empty (a skipped synthesizer drops its supernode). "
    "Costs nothing.",
    VOTE: "vote: no call; the plurality answer among the proposals. Costs nothing.",
    PASS: "pass: no call; the first successful proposal is passed on unchanged. Costs nothing.",
}


def role_texts(layout: SlotLayout, domain: str) -> list[str]:
    """One text per role of ``layout`` (in :attr:`SlotLayout.roles` order)."""
    out = []
    for role in layout.roles:
        if role == "Decision":
            out.append(
                "Role: Decision maker. Reads every supernode's answer and writes the final one."
            )
            continue
        out.append(f"Role: {role}. {_description(domain, role)}".strip())
    return out


def action_profiles(config: HieraConfig, layout: SlotLayout) -> list[str]:
    """One profile text per action of ``layout`` (in vocabulary order)."""
    out = []
    for name in layout.actions:
        if name in _PSEUDO_TEXT:
            out.append(_PSEUDO_TEXT[name])
            continue
        llm = config.llms[name]
        out.append(
            f"LLM {name} (model {llm.model or name}): US${llm.price_in:g} per million prompt "
            f"tokens, US${llm.price_out:g} per million completion tokens."
        )
    return out


def price_features(config: HieraConfig, layout: SlotLayout) -> torch.Tensor:
    """``[actions, PRICE_FEATURES]`` float32: log1p prices ($/M tokens) and a call-free flag."""
    rows = []
    for name in layout.actions:
        if name in _PSEUDO_TEXT:
            rows.append([0.0, 0.0, 1.0])
        else:
            llm = config.llms[name]
            rows.append([math.log1p(llm.price_in), math.log1p(llm.price_out), 0.0])
    return torch.tensor(rows, dtype=torch.float32)


def _description(domain: str, role: str) -> str:
    try:
        from hieramas.tasks.prompts import role_description
    except ImportError:  # the task catalogue is optional for the learner core
        return ""
    try:
        return role_description(domain, role)
    except (KeyError, ValueError):
        return ""
