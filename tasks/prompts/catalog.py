"""The prompt catalogue: domains, roles and message templates loaded from ``templates.yaml``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template
from typing import Any

import yaml

__all__ = [
    "Block",
    "Catalog",
    "CompiledTemplate",
    "DomainSpec",
    "KindTemplate",
    "PromptError",
    "RoleSpec",
    "catalog",
]


class PromptError(ValueError):
    """Unknown domain/role/kind, or a malformed template file."""


class CompiledTemplate(Template):
    """A ``string.Template`` (``$name``, ``${name}``, ``$$``) that substitutes in one C call.

    ``Template.substitute`` runs a regular expression and a Python callback per
    placeholder; every LLM call renders two templates, so the text is turned
    once into the equivalent ``str.format`` string.  Placeholders are checked
    here, not at the first substitution.
    """

    def __init__(self, template: str) -> None:
        super().__init__(template)
        parts: list[str] = []
        last = 0
        for match in self.pattern.finditer(template):
            parts.append(_literal(template[last : match.start()]))
            last = match.end()
            name = match.group("named") or match.group("braced")
            if match.group("escaped") is not None:
                parts.append("$")
            elif name is not None:
                parts.append("{" + name + "}")
            else:
                raise PromptError(f"invalid placeholder in template at offset {match.start()}")
        parts.append(_literal(template[last:]))
        self._format = "".join(parts)

    def substitute(self, mapping: Mapping[str, object] | None = None, /, **kws: object) -> str:
        """Like ``Template.substitute``: every placeholder must have a value (``KeyError``)."""
        if kws:
            mapping = {**(mapping or {}), **kws}
        return self._format.format_map(mapping if mapping is not None else {})


def _literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True, slots=True)
class RoleSpec:
    """One functional role (a supernode's job)."""

    name: str
    description: str
    answers: bool = True


@dataclass(frozen=True, slots=True)
class DomainSpec:
    """One task domain: how tasks are named, how answers must look, and its roles."""

    name: str
    task_noun: str
    answer_format: str
    planning_format: str
    roles: tuple[RoleSpec, ...]

    def role(self, name: str) -> RoleSpec:
        """The role called ``name``; :class:`PromptError` if the domain has none."""
        for spec in self.roles:
            if spec.name == name:
                return spec
        known = ", ".join(r.name for r in self.roles)
        raise PromptError(f"unknown role {name!r} for domain {self.name!r}; known: {known}")

    def format_for(self, role: str | None) -> str:
        """The answer instruction for ``role`` (a planning instruction for answer-less roles)."""
        if role is not None and not self.role(role).answers:
            return self.planning_format
        return self.answer_format


@dataclass(frozen=True, slots=True)
class Block:
    """A list of texts inside a prompt: a header line and one delimited item per text."""

    name: str
    header: str
    item: CompiledTemplate


@dataclass(frozen=True, slots=True)
class KindTemplate:
    """The system and user message templates of one kind of call."""

    kind: str
    system: CompiledTemplate
    user: CompiledTemplate


@dataclass(frozen=True, slots=True)
class Catalog:
    """Everything in ``templates.yaml``."""

    domains: dict[str, DomainSpec]
    blocks: dict[str, Block]
    kinds: dict[str, KindTemplate]

    def domain(self, name: str) -> DomainSpec:
        """The domain called ``name``; :class:`PromptError` if unknown."""
        try:
            return self.domains[name]
        except KeyError:
            known = ", ".join(self.domains)
            raise PromptError(f"unknown domain {name!r}; known: {known}") from None


def _text(node: Any, where: str) -> str:
    if not isinstance(node, str) or not node.strip():
        raise PromptError(f"templates.yaml: {where} must be a non-empty string")
    return node.strip()


def build_catalog(data: Any) -> Catalog:
    """Validate the parsed YAML document and build a :class:`Catalog`."""
    if not isinstance(data, dict):
        raise PromptError("templates.yaml: top level must be a mapping")
    domains: dict[str, DomainSpec] = {}
    for name, spec in (data.get("domains") or {}).items():
        roles = tuple(
            RoleSpec(
                name=str(role),
                description=_text(body.get("description"), f"domains.{name}.roles.{role}"),
                answers=bool(body.get("answers", True)),
            )
            for role, body in (spec.get("roles") or {}).items()
        )
        if not roles:
            raise PromptError(f"templates.yaml: domain {name!r} has no roles")
        answer_format = _text(spec.get("answer_format"), f"domains.{name}.answer_format")
        domains[str(name)] = DomainSpec(
            name=str(name),
            task_noun=_text(spec.get("task_noun"), f"domains.{name}.task_noun"),
            answer_format=answer_format,
            planning_format=str(spec.get("planning_format", answer_format)).strip(),
            roles=roles,
        )
    nouns = [d.task_noun for d in domains.values()]
    if len(set(nouns)) != len(nouns):
        raise PromptError("templates.yaml: task_noun must differ between domains")
    blocks = {
        str(name): Block(
            name=str(name),
            header=_text(body.get("header"), f"blocks.{name}.header"),
            item=CompiledTemplate(_text(body.get("item"), f"blocks.{name}.item")),
        )
        for name, body in (data.get("blocks") or {}).items()
    }
    kinds = {
        str(kind): KindTemplate(
            kind=str(kind),
            system=CompiledTemplate(_text(body.get("system"), f"kinds.{kind}.system")),
            user=CompiledTemplate(_text(body.get("user"), f"kinds.{kind}.user")),
        )
        for kind, body in (data.get("kinds") or {}).items()
    }
    return Catalog(domains=domains, blocks=blocks, kinds=kinds)


@cache
def catalog() -> Catalog:
    """The packaged catalogue (parsed once)."""
    source = resources.files("hieramas.tasks.prompts").joinpath("templates.yaml")
    return build_catalog(yaml.safe_load(source.read_text(encoding="utf-8")))
