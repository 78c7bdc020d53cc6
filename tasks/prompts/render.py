"""Render chat messages for every kind of call from the catalogue's templates."""

from __future__ import annotations

from collections.abc import Sequence

from hieramas.tasks.prompts.catalog import PromptError, catalog

__all__ = [
    "aggregate_messages",
    "answer_format",
    "answerless_roles",
    "debate_messages",
    "decision_messages",
    "proposer_messages",
    "render_block",
    "role_description",
    "roles",
    "single_messages",
    "synthesizer_messages",
]

Messages = list[dict[str, str]]


def roles(domain: str) -> list[str]:
    """Role names of ``domain`` in catalogue order."""
    return [r.name for r in catalog().domain(domain).roles]


def answerless_roles(domain: str) -> set[str]:
    """Roles of ``domain`` whose output contains no answer (their reward uses α = 0)."""
    return {r.name for r in catalog().domain(domain).roles if not r.answers}


def role_description(domain: str, role: str) -> str:
    """The one-paragraph description of ``role``."""
    return catalog().domain(domain).role(role).description


def answer_format(domain: str, role: str | None = None) -> str:
    """The answer-format instruction given to ``role`` (None: the final answer's format)."""
    return catalog().domain(domain).format_for(role)


def render_block(name: str, items: Sequence[tuple[str, str]]) -> str:
    """A block of (label, text) items; empty string when there are none."""
    if not items:
        return ""
    block = catalog().blocks[name]
    for label, _ in items:
        if "\n" in label or '"' in label:
            raise PromptError(f"block label must be one line without quotes: {label!r}")
    rendered = [block.item.substitute(label=label, text=text) for label, text in items]
    return block.header + "\n\n" + "\n\n".join(rendered) + "\n\n"


def _numbered(texts: Sequence[str]) -> list[tuple[str, str]]:
    return [(str(i), text) for i, text in enumerate(texts, start=1)]


def _render(
    kind: str,
    domain: str,
    task_text: str,
    *,
    role: str | None = None,
    blocks: dict[str, Sequence[tuple[str, str]]] | None = None,
) -> Messages:
    spec = catalog().domain(domain)
    template = catalog().kinds[kind]
    values: dict[str, str] = {
        "task": task_text,
        "task_noun": spec.task_noun,
        "answer_format": spec.format_for(role),
    }
    if role is not None:
        values["role"] = role
        values["role_description"] = spec.role(role).description
    for name, items in (blocks or {}).items():
        values[name] = render_block(name, items)
    return [
        {"role": "system", "content": template.system.substitute(values)},
        {"role": "user", "content": template.user.substitute(values)},
    ]


def proposer_messages(
    domain: str, role: str, task_text: str, predecessors: Sequence[tuple[str, str]]
) -> Messages:
    """A proposer of ``role``: the task and its predecessors' (role, output) pairs."""
    return _render("proposer", domain, task_text, role=role, blocks={"predecessors": predecessors})


def synthesizer_messages(
    domain: str,
    role: str,
    task_text: str,
    proposals: Sequence[str],
    predecessors: Sequence[tuple[str, str]],
) -> Messages:
    """The synthesizer of ``role``: the task, predecessors' outputs and its proposers' texts."""
    return _render(
        "synthesizer",
        domain,
        task_text,
        role=role,
        blocks={"predecessors": predecessors, "proposals": _numbered(proposals)},
    )


def decision_messages(domain: str, task_text: str, outputs: Sequence[tuple[str, str]]) -> Messages:
    """The decision node: the task and every active supernode's (role, output)."""
    return _render("decision", domain, task_text, blocks={"outputs": outputs})


def single_messages(domain: str, task_text: str, *, cot: bool = False) -> Messages:
    """Single-LLM baseline: direct answer, or chain of thought with ``cot``."""
    return _render("single_cot" if cot else "single", domain, task_text)


def debate_messages(domain: str, task_text: str, previous_answers: Sequence[str]) -> Messages:
    """One multi-agent debate round after the first: the agents' previous-round answers."""
    return _render("debate", domain, task_text, blocks={"answers": _numbered(previous_answers)})


def aggregate_messages(domain: str, task_text: str, responses: Sequence[str]) -> Messages:
    """Mixture-of-Agents aggregator: the reference models' responses."""
    return _render("aggregate", domain, task_text, blocks={"responses": _numbered(responses)})
