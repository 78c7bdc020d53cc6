"""Answers per domain: gold and wrong answers of an item, and reading candidates from prompts.

Candidate texts are read with the tasks package's canonical answer keys
(:func:`hieramas.tasks.answers.extract_answer`), so "same answer" means the
same thing here as in the runtime and the graders.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Protocol

from hieramas.emulator.behaviour import Candidate
from hieramas.emulator.hashing import uniform
from hieramas.emulator.profiles import AnswerKind, PoolProfiles
from hieramas.emulator.wrong import WrongAnswers, gsm8k_wrong, math_wrong, mcq_wrong
from hieramas.tasks.answers import extract_answer, extract_code, normalize_code
from hieramas.tasks.datasets import Item
from hieramas.tasks.graders.math import math_equivalent
from hieramas.tasks.mathtext import extract_math_answer, normalize_math

__all__ = ["AnswerSpace", "CodeVariants", "candidate_key"]

_FALLBACK_POOL = 12


class CodeVariants(Protocol):
    """Source of verified buggy versions of a HumanEval item's reference solution."""

    def cached(self, item: Item) -> list[str] | None:
        """Variants if already known (no work), else ``None``."""
        ...

    async def variants(self, item: Item) -> list[str]:
        """Variants, computing and verifying them once if needed."""
        ...


@lru_cache(maxsize=8192)
def _extract(domain: str, text: str, choices: tuple[str, ...]) -> tuple[str, str] | None:
    key = extract_answer(domain, text, choices=choices)
    if key is None:
        return None
    if domain == "math":
        raw = extract_math_answer(text) or key
    elif domain == "humaneval":
        raw = extract_code(text) or key
    else:
        raw = key
    return key, raw


def candidate_key(domain: str, text: str, choices: Sequence[str] = ()) -> tuple[str, str] | None:
    """``(canonical key, raw answer)`` of a reply, or ``None`` when unparseable (memoised)."""
    return _extract(domain, text, tuple(choices))


class AnswerSpace:
    """Gold and wrong answers of items, and candidate reading, for every profiled domain."""

    def __init__(
        self,
        profiles: PoolProfiles,
        items: Mapping[str, Sequence[Item]],
        code: CodeVariants | None,
    ) -> None:
        self._profiles = profiles
        self._salt = profiles.behaviour.difficulty_salt
        self._limit = profiles.behaviour.wrong_candidates
        self._wrong = WrongAnswers(self._salt, profiles.behaviour.distractor_concentration)
        self._code = code
        self._options: dict[str, list[str]] = {}
        self._gold_key: dict[str, str] = {}
        self._gold_raw: dict[str, str] = {}
        self._equal: dict[tuple[str, str], bool] = {}
        self._by_subject: dict[tuple[str, str], list[Item]] = {}
        for domain_items in items.values():
            for item in domain_items:
                self._by_subject.setdefault((item.domain, item.subject), []).append(item)

    def kind(self, domain: str) -> AnswerKind:
        """How answers of ``domain`` look (``KeyError`` if the domain is not profiled)."""
        return self._profiles.domains[domain].answer_kind

    def gold(self, item: Item) -> str:
        """The correct answer as it is written in a reply (code: re-rendered like the mutants)."""
        if self.kind(item.domain) == "code":
            raw = self._gold_raw.get(item.id)
            if raw is None:
                raw = self._gold_raw[item.id] = _unparse(item.answer)
            return raw
        return item.answer

    def gold_key(self, item: Item) -> str:
        """The canonical key of the correct answer."""
        key = self._gold_key.get(item.id)
        if key is None:
            kind = self.kind(item.domain)
            if kind == "math":
                key = normalize_math(item.answer)
            elif kind == "code":
                key = normalize_code(item.answer) or item.answer
            else:
                key = item.answer
            self._gold_key[item.id] = key
        return key

    def candidates(self, item: Item, texts: Sequence[str]) -> list[Candidate]:
        """The parseable answers among ``texts`` (unparseable ones are dropped)."""
        gold = self.gold_key(item)
        out: list[Candidate] = []
        for text in texts:
            found = candidate_key(item.domain, text, item.choices)
            if found is not None:
                key, raw = found
                correct = key == gold or (
                    item.domain == "math" and self._math_equal(item, key, raw)
                )
                out.append(Candidate(key=key, raw=raw, correct=correct))
        return out

    def _math_equal(self, item: Item, key: str, raw: str) -> bool:
        """The MATH grader's verdict on a candidate, memoised per (item, key)."""
        memo = (item.id, key)
        verdict = self._equal.get(memo)
        if verdict is None:
            verdict = math_equivalent(raw, item.answer).equal
            if len(self._equal) < 200_000:
                self._equal[memo] = verdict
        return verdict

    def wrong_options(self, item: Item) -> list[str] | None:
        """The item's plausible wrong answers, or ``None`` if code variants are not ready yet."""
        options = self._options.get(item.id)
        if options is not None:
            return options
        kind = self.kind(item.domain)
        if kind == "code":
            variants = self._code.cached(item) if self._code is not None else []
            if variants is None:
                return None
            options = variants or [_failing_stub(item)]
        elif kind == "mcq":
            options = mcq_wrong(item.answer, len(item.choices) or 4)
        elif kind == "number":
            options = gsm8k_wrong(item.answer, self._salt, item.id, self._limit)
        else:
            options = math_wrong(
                item.answer,
                self._salt,
                item.id,
                self._limit,
                fallback=self._fallback(item),
                differs=lambda cand: not math_equivalent(cand, item.answer).equal,
            )
            for option in options:
                self._equal[(item.id, normalize_math(option))] = False
        if not options:
            options = [item.answer + "1"]
        self._options[item.id] = options
        return options

    async def prepare(self, item: Item) -> None:
        """Make sure the item's wrong answers exist, off the event loop when that is slow.

        Code variants are verified once in the sandbox; MATH wrong answers are
        checked with the MATH grader (which may call sympy) once per item.
        """
        if item.id in self._options:
            return
        kind = self.kind(item.domain)
        if kind == "code":
            if self.wrong_options(item) is None and self._code is not None:
                await self._code.variants(item)
        elif kind == "math":
            await asyncio.to_thread(self.wrong_options, item)

    def pick_wrong(self, item: Item, u: float) -> str:
        """One wrong answer, drawn with the item's fixed attractiveness weights."""
        options = self.wrong_options(item)
        if options is None:
            raise RuntimeError(f"wrong answers of {item.id} not prepared")
        return self._wrong.pick(item.id, options, u)

    def _fallback(self, item: Item) -> list[str]:
        pool = self._by_subject.get((item.domain, item.subject), [])
        others = [x for x in pool if x.id != item.id]
        others.sort(key=lambda x: uniform(self._salt, "fallback", item.id, x.id))
        return [x.answer for x in others[:_FALLBACK_POOL]]


def _unparse(code: str) -> str:
    """Source in ``ast.unparse`` layout (the layout of injected-bug mutants), or as is."""
    try:
        return ast.unparse(ast.parse(code))
    except (SyntaxError, ValueError):
        return code


def _failing_stub(item: Item) -> str:
    """Last resort wrong code: the signature with a body that returns ``None``."""
    return item.question.rstrip() + "\n    return None\n"
