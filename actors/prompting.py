"""The runtime's view of the task catalogue: prompt rendering and answer extraction."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from hieramas.llm.types import Message
from hieramas.tasks import answers, prompts

__all__ = [
    "check_roles",
    "decision_messages",
    "extract_answer",
    "proposer_messages",
    "single_messages",
    "synthesizer_messages",
]


_RENDERED_KEEP = 32
"""Proposer prompts kept rendered: a node's proposers get the same prompt, one after another."""


@functools.lru_cache(maxsize=_RENDERED_KEEP)
def _rendered(
    domain: str, role: str, task: str, predecessors: tuple[tuple[str, str], ...]
) -> tuple[Message, ...]:
    return tuple(prompts.proposer_messages(domain, role, task, predecessors))


def proposer_messages(
    domain: str, role: str, task: str, predecessors: Sequence[tuple[str, str]]
) -> list[Message]:
    """Messages for one proposer of ``role``.

    The proposers of a node all get the same prompt, so the last few are kept rendered:
    each call gets its own copy of the messages (a client may change what it is given)."""
    rendered = _rendered(domain, role, task, tuple(predecessors))
    return [dict(message) for message in rendered]


def synthesizer_messages(
    domain: str,
    role: str,
    task: str,
    proposals: Sequence[str],
    predecessors: Sequence[tuple[str, str]],
) -> list[Message]:
    """Messages for the synthesizer of ``role`` over ``proposals``."""
    return prompts.synthesizer_messages(domain, role, task, proposals, predecessors)


def decision_messages(domain: str, task: str, outputs: Sequence[tuple[str, str]]) -> list[Message]:
    """Messages for the decision node over the supernodes' outputs."""
    return prompts.decision_messages(domain, task, outputs)


def single_messages(domain: str, task: str, *, cot: bool = True) -> list[Message]:
    """Messages for one LLM answering alone (the all-skipped case): reasoning first with
    ``cot``, else a direct answer."""
    return prompts.single_messages(domain, task, cot=cot)


def extract_answer(domain: str, text: str) -> str | None:
    """The canonical answer in ``text`` (``None`` when unparseable)."""
    return answers.extract_answer(domain, text)


def check_roles(domain: str, roles: Sequence[str]) -> str | None:
    """Why ``roles`` cannot be prompted in ``domain`` (an unknown domain or role), or ``None``."""
    try:
        known = prompts.roles(domain)
    except ValueError as exc:
        return str(exc)
    unknown = sorted({role for role in roles if role not in known})
    return f"unknown role(s) {unknown} for domain {domain!r}" if unknown else None
