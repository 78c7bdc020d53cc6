"""Roles and prompts per domain, rendered from ``templates.yaml``, and their parser."""

from __future__ import annotations

from hieramas.tasks.prompts.catalog import PromptError, RoleSpec, catalog
from hieramas.tasks.prompts.parse import PromptInfo, PromptKind, parse_prompt
from hieramas.tasks.prompts.render import (
    aggregate_messages,
    answer_format,
    answerless_roles,
    debate_messages,
    decision_messages,
    proposer_messages,
    role_description,
    roles,
    single_messages,
    synthesizer_messages,
)

__all__ = [
    "PromptError",
    "PromptInfo",
    "PromptKind",
    "RoleSpec",
    "aggregate_messages",
    "answer_format",
    "answerless_roles",
    "catalog",
    "debate_messages",
    "decision_messages",
    "parse_prompt",
    "proposer_messages",
    "role_description",
    "roles",
    "single_messages",
    "synthesizer_messages",
]
