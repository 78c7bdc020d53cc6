"""Parse rendered prompts back into their parts (the inverse of :mod:`.render`).

The LLM emulator uses this to learn what a request is: which kind of call,
domain and role, the task text, and the candidate texts (predecessors'
outputs, proposals, previous-round answers, responses) it contains.  Each
template is compiled once into a regular expression that follows its
structure exactly, blocks and items included.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from string import Template
from typing import Literal, cast

from hieramas.tasks.prompts.catalog import catalog

__all__ = ["PromptInfo", "PromptKind", "parse_prompt"]

PromptKind = Literal[
    "proposer", "synthesizer", "decision", "single", "debate", "aggregate", "unknown"
]


@dataclass(frozen=True, slots=True)
class PromptInfo:
    """What a prompt asks for.

    ``candidates`` are the texts the prompt offers as answers, in order: a
    proposer's predecessors' outputs, a synthesizer's proposals, the decision
    node's supernode outputs, a debate round's previous answers, an
    aggregator's responses.  ``candidate_labels`` are their roles (outputs)
    or numbers.  ``context`` holds (role, output) of predecessors (for a
    synthesizer these are not candidates).  ``cot`` marks the CoT baseline.
    """

    kind: PromptKind
    domain: str | None = None
    role: str | None = None
    task_text: str = ""
    candidates: list[str] = field(default_factory=list)
    candidate_labels: list[str] = field(default_factory=list)
    context: list[tuple[str, str]] = field(default_factory=list)
    cot: bool = False


_GROUPS = {
    "task": r"(?P<task>.*?)",
    "role": r"(?P<role>[^\n]+?)",
    "role_description": r"(?P<role_description>.*?)",
    "task_noun": r"(?P<task_noun>[^\n]+?)",
    "answer_format": r"(?P<answer_format>.*)",
    "label": r"(?P<label>[^\n\"]*)",
    "text": r"(?P<text>.*?)",
}


def _template_regex(template: Template, blocks: Mapping[str, str]) -> str:
    parts: list[str] = []
    seen: set[str] = set()
    last = 0
    text = template.template
    for m in template.pattern.finditer(text):
        parts.append(re.escape(text[last : m.start()]))
        last = m.end()
        if m.group("escaped") is not None:
            parts.append(re.escape("$"))
            continue
        name = m.group("named") or m.group("braced")
        if name is None:
            raise ValueError(f"invalid placeholder in template at offset {m.start()}")
        if name in seen:
            parts.append(f"(?P={name})")
        elif name in blocks:
            parts.append(f"(?P<{name}>{blocks[name]})")
        else:
            parts.append(_GROUPS.get(name, f"(?P<{name}>.*?)"))
        seen.add(name)
    parts.append(re.escape(text[last:]))
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class _Compiled:
    kind: str
    system: re.Pattern[str]
    user: re.Pattern[str]
    blocks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Parser:
    kinds: tuple[_Compiled, ...]
    items: Mapping[str, re.Pattern[str]]
    headers: Mapping[str, str]
    domains: Mapping[str, str]  # task_noun -> domain
    roles: Mapping[str, frozenset[str]]


@cache
def _parser() -> _Parser:
    cat = catalog()
    items: dict[str, re.Pattern[str]] = {}
    block_patterns: dict[str, str] = {}
    for name, block in cat.blocks.items():
        item = _template_regex(block.item, {})
        opening = re.escape(block.item.template.split("$", 1)[0])
        # an item ends where the next item of its block, or the block itself, ends
        items[name] = re.compile(item + rf"(?=\n\n(?:{opening}|\Z))", re.DOTALL)
        plain = re.sub(r"\(\?P<\w+>", "(?:", item)
        block_patterns[name] = rf"(?:{re.escape(block.header)}\n\n(?:{plain}\n\n)+)?"
    kinds = []
    for kind, tmpl in cat.kinds.items():
        used = {
            m.group("named") or m.group("braced")
            for m in tmpl.user.pattern.finditer(tmpl.user.template)
        }
        kinds.append(
            _Compiled(
                kind=kind,
                system=re.compile(_template_regex(tmpl.system, block_patterns), re.DOTALL),
                user=re.compile(_template_regex(tmpl.user, block_patterns), re.DOTALL),
                blocks=tuple(b for b in cat.blocks if b in used),
            )
        )
    return _Parser(
        kinds=tuple(kinds),
        items=items,
        headers={name: block.header + "\n\n" for name, block in cat.blocks.items()},
        domains={spec.task_noun: name for name, spec in cat.domains.items()},
        roles={name: frozenset(r.name for r in spec.roles) for name, spec in cat.domains.items()},
    )


def _message(messages: Sequence[Mapping[str, str]], role: str, last: bool) -> str | None:
    found = [m.get("content", "") for m in messages if m.get("role") == role]
    if not found:
        return None
    return found[-1] if last else found[0]


def parse_prompt(messages: Sequence[Mapping[str, str]]) -> PromptInfo:
    """Recognise a prompt rendered by this package; ``kind="unknown"`` otherwise."""
    system = _message(messages, "system", last=False)
    user = _message(messages, "user", last=True)
    if system is None or user is None:
        return PromptInfo(kind="unknown")
    parser = _parser()
    for compiled in parser.kinds:
        sm = compiled.system.fullmatch(system)
        if sm is None:
            continue
        domain = parser.domains.get(sm.group("task_noun"))
        role = sm.groupdict().get("role")
        if domain is None or (role is not None and role not in parser.roles[domain]):
            continue
        um = compiled.user.fullmatch(user)
        if um is None:
            continue
        context: list[tuple[str, str]] = []
        candidates: list[tuple[str, str]] = []
        for block in compiled.blocks:
            body = (um.group(block) or "")[len(parser.headers[block]) :]
            found = [
                (m.group("label"), m.group("text")) for m in parser.items[block].finditer(body)
            ]
            if block == "predecessors" and compiled.kind == "synthesizer":
                context = found
            else:
                candidates = found
        if compiled.kind == "proposer":
            context = list(candidates)
        kind = "single" if compiled.kind == "single_cot" else compiled.kind
        return PromptInfo(
            kind=cast(PromptKind, kind),
            domain=domain,
            role=role,
            task_text=um.group("task"),
            candidates=[text for _, text in candidates],
            candidate_labels=[label for label, _ in candidates],
            context=context,
            cot=compiled.kind == "single_cot",
        )
    return PromptInfo(kind="unknown")
