"""Roles, rendered prompts and their parser (roundtrip over every real task text)."""

from __future__ import annotations

import itertools
from string import Template

import pytest
import yaml

from hieramas.tasks import datasets as ds
from hieramas.tasks import prompts as p
from hieramas.tasks.prompts.catalog import CompiledTemplate, PromptError, build_catalog, catalog

TEXTS = [
    "```python\ndef f(x):\n    return x + 1\n```",
    "Reasoning...\n\nThe answer is (B)",
    "",
    "line one\n\nline two\n",
    'a text that mentions <output role="Critic"> and </proposal> in passing',
]


def test_roles_per_domain() -> None:
    assert p.roles("mmlu") == [
        "Knowledgeable Expert",
        "Critic",
        "Mathematician",
        "Psychologist",
        "Historian",
        "Doctor",
        "Lawyer",
        "Economist",
    ]
    assert p.roles("math") == ["Mathematical Analyst", "Math Solver", "Inspector"]
    assert p.roles("gsm8k") == p.roles("math")
    assert p.roles("humaneval") == [
        "Project Manager",
        "Algorithm Designer",
        "Programming Expert",
        "Test Analyst",
        "Bug Fixer",
    ]
    assert len(p.roles("general")) == 3
    assert p.answerless_roles("humaneval") == {"Project Manager"}
    assert all(not p.answerless_roles(d) for d in ("mmlu", "math", "gsm8k", "general"))
    with pytest.raises(p.PromptError, match="unknown domain"):
        p.roles("chess")
    with pytest.raises(p.PromptError, match="unknown role"):
        p.proposer_messages("math", "Lawyer", "q", [])


def test_answer_formats_are_explicit() -> None:
    assert '"The answer is (X)"' in p.answer_format("mmlu")
    assert "\\boxed{}" in p.answer_format("math")
    assert '"The answer is N"' in p.answer_format("gsm8k")
    assert "```python" in p.answer_format("humaneval")
    assert "Do not write the implementation" in p.answer_format("humaneval", "Project Manager")
    msgs = p.proposer_messages("humaneval", "Project Manager", "def f(): ...", [])
    assert "Do not write the implementation" in msgs[1]["content"]
    for kind in (
        p.decision_messages("mmlu", "q", [("Critic", "x")]),
        p.single_messages("gsm8k", "q"),
        p.single_messages("math", "q", cot=True),
        p.debate_messages("math", "q", ["a"]),
        p.aggregate_messages("general", "q", ["a"]),
    ):
        assert kind[1]["content"].endswith(p.answer_format(p.parse_prompt(kind).domain or ""))


def test_predecessors_are_included() -> None:
    msgs = p.proposer_messages("mmlu", "Critic", "Q?", [("Doctor", "I think (A)"), ("Lawyer", "B")])
    user = msgs[1]["content"]
    assert '<output role="Doctor">\nI think (A)\n</output>' in user
    assert user.index("Doctor") < user.index("Lawyer")
    assert msgs[0]["role"] == "system" and "Critic" in msgs[0]["content"]


def _all_builders(domain: str, task: str) -> list[tuple[str, str | None, list[dict[str, str]]]]:
    out: list[tuple[str, str | None, list[dict[str, str]]]] = []
    pairs = [(role, text) for role, text in zip(p.roles(domain), TEXTS, strict=False)]
    for role in p.roles(domain):
        out.append(("proposer", role, p.proposer_messages(domain, role, task, pairs)))
        out.append(("proposer", role, p.proposer_messages(domain, role, task, [])))
        out.append(("synthesizer", role, p.synthesizer_messages(domain, role, task, TEXTS, pairs)))
        out.append(("synthesizer", role, p.synthesizer_messages(domain, role, task, TEXTS[:1], [])))
    out.append(("decision", None, p.decision_messages(domain, task, pairs)))
    out.append(("single", None, p.single_messages(domain, task)))
    out.append(("single", None, p.single_messages(domain, task, cot=True)))
    out.append(("debate", None, p.debate_messages(domain, task, TEXTS)))
    out.append(("aggregate", None, p.aggregate_messages(domain, task, TEXTS)))
    return out


@pytest.mark.parametrize("domain", ["mmlu", "math", "gsm8k", "humaneval", "general"])
def test_roundtrip_every_kind_and_role(domain: str) -> None:
    task = "Compute $x$ if {x} = 2.\n\n  Indented line\n"
    for kind, role, msgs in _all_builders(domain, task):
        info = p.parse_prompt(msgs)
        assert (info.kind, info.domain, info.role, info.task_text) == (kind, domain, role, task)
        assert info.cot == ("Think step by step" in msgs[1]["content"])
        if kind == "synthesizer":
            user = msgs[1]["content"]
            n = 1 if '<proposal n="2">' not in user else len(TEXTS)
            assert info.candidates == TEXTS[:n]
            assert info.candidate_labels == [str(i) for i in range(1, n + 1)]
        elif kind in ("debate", "aggregate"):
            assert info.candidates == TEXTS
        elif kind in ("proposer", "decision") and info.candidates:
            assert list(zip(info.candidate_labels, info.candidates, strict=True)) == [
                (r, t) for r, t in zip(p.roles(domain), TEXTS, strict=False)
            ]


@pytest.mark.parametrize("dataset", ["mmlu_redux", "math500", "gsm8k", "humaneval"])
def test_roundtrip_real_task_texts(dataset: str) -> None:
    items = ds.load(dataset, include_unscored=True)
    domain = items[0].domain
    roles = itertools.cycle(p.roles(domain))
    for item in items[:2000]:
        role = next(roles)
        msgs = p.synthesizer_messages(domain, role, item.question, ["x", "y"], [(role, "z")])
        info = p.parse_prompt(msgs)
        assert info.task_text == item.question and info.role == role
        assert info.candidates == ["x", "y"] and info.context == [(role, "z")]


def test_unknown_prompts() -> None:
    assert p.parse_prompt([]).kind == "unknown"
    assert p.parse_prompt([{"role": "user", "content": "hello"}]).kind == "unknown"
    msgs = p.proposer_messages("math", "Inspector", "q", [])
    msgs[1]["content"] = msgs[1]["content"].replace("<task>", "<tsk>")
    assert p.parse_prompt(msgs).kind == "unknown"
    msgs = p.proposer_messages("math", "Inspector", "q", [])
    msgs[0]["content"] = msgs[0]["content"].replace("Inspector", "Juggler")
    assert p.parse_prompt(msgs).kind == "unknown"


def test_catalog_validation() -> None:
    with pytest.raises(p.PromptError, match="top level"):
        build_catalog(["x"])
    doc = yaml.safe_load("domains: {a: {task_noun: t, answer_format: f, roles: {}}}")
    with pytest.raises(p.PromptError, match="no roles"):
        build_catalog(doc)
    doc = yaml.safe_load(
        "domains: {a: {task_noun: t, answer_format: f, roles: {R: {description: d}}},"
        " b: {task_noun: t, answer_format: f, roles: {R: {description: d}}}}"
    )
    with pytest.raises(p.PromptError, match="task_noun must differ"):
        build_catalog(doc)


@pytest.mark.parametrize(
    "text",
    [
        "plain",
        "$a and ${b}c, $$5 {not a field} {{braces}}",
        "${a}${a}$b.$$",
        "\\boxed{\\frac{$a}{4}}",
    ],
)
def test_compiled_template_renders_like_string_template(text: str) -> None:
    values = {"a": "x{y}", "b": "$b"}
    assert CompiledTemplate(text).substitute(values) == Template(text).substitute(values)
    assert CompiledTemplate(text).substitute(values, a="k") == Template(text).substitute(
        values, a="k"
    )


def test_compiled_template_errors() -> None:
    with pytest.raises(KeyError):
        CompiledTemplate("$a $missing").substitute(a="1")
    with pytest.raises(PromptError, match="invalid placeholder"):
        CompiledTemplate("costs $5")


def test_every_catalogue_template_renders_like_string_template() -> None:
    cat = catalog()
    templates = [b.item for b in cat.blocks.values()]
    templates += [t for k in cat.kinds.values() for t in (k.system, k.user)]
    for template in templates:
        values = {name: f"<{name} {{$x}}>" for name in template.get_identifiers()}
        assert template.substitute(values) == Template(template.template).substitute(values)
