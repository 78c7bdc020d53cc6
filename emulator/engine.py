"""The emulated pool: from a chat request to a reply, its usage, cost and latency.

Start-up (``Engine.create``) loads the profiles and the datasets present in
the data directory, builds the item index and calibrates every model once.
Per request the work is a prompt parse, an index lookup, a few hashes and
string assembly.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from hieramas.emulator.accounting import count_tokens, draw_lognormal, prompt_tokens, timing
from hieramas.emulator.answers import AnswerSpace, CodeVariants
from hieramas.emulator.api import ApiError, ChatCompletionRequest, Choice, completion_body
from hieramas.emulator.behaviour import Decision, Rule, decide
from hieramas.emulator.hashing import Stream, digest
from hieramas.emulator.index import ItemIndex, load_items
from hieramas.emulator.profiles import ModelProfile, PoolProfiles, load_profiles
from hieramas.emulator.skill import SkillModel
from hieramas.emulator.text import answer_block, generic_reply, malformed_tail, prose
from hieramas.tasks.datasets import Item, data_dir, is_scored
from hieramas.tasks.prompts import PromptInfo, answerless_roles, parse_prompt

__all__ = ["ChoiceOut", "Completion", "Engine", "Reply"]

log = structlog.get_logger(__name__)

_RULES: Mapping[str, Rule] = {
    "proposer": "herd",
    "debate": "herd",
    "synthesizer": "synth",
    "decision": "synth",
    "aggregate": "synth",
    "single": "solo",
    "unknown": "solo",
}
_STYLE = {"mcq": "mcq", "math": "math", "number": "number", "code": "code"}
_GENERAL_ANSWERS = (
    "It depends on the specific context, but the most likely answer is yes.",
    "The most reasonable answer is no, given the usual assumptions.",
    "Both options have merit; on balance the first is preferable.",
    "There is not enough information to be certain; the best estimate is the common case.",
)


@dataclass(frozen=True, slots=True)
class Reply:
    """One generated reply before HTTP framing (also handy for in-process tests)."""

    text: str
    item_id: str | None
    correct: bool | None
    how: str
    malformed: bool


@dataclass(frozen=True, slots=True)
class ChoiceOut:
    """One choice of a completion, with its simulated timing (unscaled seconds)."""

    text: str
    finish_reason: Literal["stop", "length"]
    completion_tokens: int
    ttft_s: float
    latency_s: float


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished completion: the response body plus what the server needs to pace it."""

    id: str
    created: int
    model: str
    choices: list[ChoiceOut]
    body: dict[str, Any]
    latency_s: float


class Engine:
    """Profile-driven behaviour of the whole pool."""

    def __init__(
        self,
        profiles: PoolProfiles,
        *,
        seed: int,
        latency_scale: float,
        items: Mapping[str, Sequence[Item]],
        calibration_items: Mapping[str, Sequence[Item]],
        code: CodeVariants | None,
        profile_source: str,
    ) -> None:
        if latency_scale < 0:
            raise ValueError(f"latency_scale must be ≥ 0, got {latency_scale}")
        self.profiles = profiles
        self.seed = seed
        self.latency_scale = latency_scale
        self.profile_source = profile_source
        all_items = [item for group in items.values() for item in group]
        self.index = ItemIndex(all_items)
        self.skill = SkillModel(profiles, calibration_items)
        self.answers = AnswerSpace(profiles, items, code)
        self._answerless = {d: _answerless(d) for d in profiles.domains}
        self._domains = {d for d, group in calibration_items.items() if group}

    @classmethod
    def create(
        cls,
        *,
        profiles_path: str | Path | None = None,
        seed: int = 0,
        latency_scale: float = 1.0,
        data_dir: str | Path | None = None,
        code: CodeVariants | None = None,
    ) -> Engine:
        """Load profiles and datasets, index and calibrate (the start-up work)."""
        profiles = load_profiles(profiles_path)
        root = _resolve_data_dir(data_dir)
        wanted = {spec.dataset for spec in profiles.domains.values()}
        by_dataset = load_items(root, sorted(wanted))
        items: dict[str, list[Item]] = {}
        calibration: dict[str, list[Item]] = {}
        for domain, spec in profiles.domains.items():
            if spec.dataset not in by_dataset:
                log.warning("emulator_domain_without_data", domain=domain, data_dir=str(root))
                continue
            items[domain] = by_dataset[spec.dataset]
            calibration[domain] = [item for item in items[domain] if is_scored(item)]
        return cls(
            profiles,
            seed=seed,
            latency_scale=latency_scale,
            items=items,
            calibration_items=calibration,
            code=code if code is not None else _default_code(profiles),
            profile_source=str(profiles_path or "<package>/profiles.yaml"),
        )

    # -- metadata ------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Seed, profile and pool summary (for ``/health`` and logs)."""
        return {
            "emulated": True,
            "profile": self.profiles.name,
            "profile_source": self.profile_source,
            "seed": self.seed,
            "latency_scale": self.latency_scale,
            "models": len(self.profiles.models),
            "items_indexed": len(self.index),
        }

    def model_card(self, name: str) -> dict[str, Any] | None:
        """The ``/v1/models`` entry of ``name`` (``None`` if not in the pool)."""
        prof = self.profiles.models.get(name)
        if prof is None:
            return None
        return {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "hieramas-emulator",
            "emulated": True,
            "emulates": prof.model_id,
            "pricing": {
                "prompt_per_m": prof.prices.input_per_m,
                "completion_per_m": prof.prices.output_per_m,
            },
        }

    def model_cards(self) -> list[dict[str, Any]]:
        """All ``/v1/models`` entries."""
        return [card for name in self.profiles.models if (card := self.model_card(name))]

    # -- one call ------------------------------------------------------------------------------

    async def complete(self, req: ChatCompletionRequest) -> Completion:
        """Answer one chat-completions request (raises :class:`ApiError` for unknown models)."""
        profile = self.profiles.models.get(req.model)
        if profile is None:
            raise ApiError(
                404,
                f"model {req.model!r} is not in the emulated pool; "
                f"known: {', '.join(self.profiles.models)}",
                param="model",
                code="model_not_found",
            )
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        info = _parse(messages)
        item = self._recognise(messages, info)
        if item is not None:
            await self.answers.prepare(item)
        context = digest(
            *(f"{m['role']}:{m['content']}" for m in messages),
            req.seed,
            (req.model_extra or {}).get("user"),
        ).hex()
        limit = req.token_limit()
        choices: list[ChoiceOut] = []
        for n in range(req.n):
            ctx = context if n == 0 else f"{context}/{n}"
            reply = self.reply(req.model, info, item, ctx)
            text, finish = _truncate(reply.text, limit)
            tokens = count_tokens(text)
            t = timing(profile, tokens, Stream(self.seed, req.model, ctx))
            choices.append(ChoiceOut(text, finish, tokens, t.ttft_s, t.total_s))
        p_tokens = prompt_tokens(m["content"] for m in messages)
        c_tokens = sum(c.completion_tokens for c in choices)
        cost = (
            p_tokens * profile.prices.input_per_m + c_tokens * profile.prices.output_per_m
        ) / 1e6
        completion_id = f"chatcmpl-emu-{digest(self.seed, req.model, context, req.n).hex()}"
        created = int(time.time())
        latency = max(c.latency_s for c in choices)
        body = completion_body(
            completion_id=completion_id,
            created=created,
            model=req.model,
            choices=[
                Choice(
                    text=c.text,
                    finish_reason=c.finish_reason,
                    completion_tokens=c.completion_tokens,
                )
                for c in choices
            ],
            prompt_tokens=p_tokens,
            cost_usd=cost,
            extra={
                "profile": self.profiles.name,
                "seed": self.seed,
                "latency_s": round(latency, 4),
                "ttft_s": round(choices[0].ttft_s, 4),
                "latency_scale": self.latency_scale,
            },
        )
        return Completion(completion_id, created, req.model, choices, body, latency)

    def _recognise(self, messages: Sequence[Mapping[str, str]], info: PromptInfo) -> Item | None:
        if info.domain is not None and info.domain not in self.profiles.domains:
            return None
        text = "\n".join(m["content"] for m in messages)
        task = info.task_text if info.kind != "unknown" else None
        item = self.index.find(text, task_text=task, domain=info.domain)
        if item is None or item.domain not in self._domains:
            return None
        if info.domain is not None and item.domain != info.domain:
            return None
        return item

    def reply(self, model: str, info: PromptInfo, item: Item | None, context: str) -> Reply:
        """The reply text of ``model`` to a parsed prompt (``item=None``: a generic reply)."""
        profile = self.profiles.models[model]
        st = Stream(self.seed, model, item.id if item else "-", info.role, info.kind, context)
        if item is None:
            return self._generic(profile, info, st)
        domain = item.domain
        kind = self.answers.kind(domain)
        style = _STYLE[kind]

        def body(style: str) -> str:
            dist = self.profiles.domains[domain].output_tokens
            target = round(draw_lognormal(dist, st, "length") * profile.verbosity)
            return prose(style, target, st.rng("prose"), question=item.question)

        if info.role is not None and info.role in self._answerless.get(domain, set()):
            return Reply(body(style), item.id, None, "plan", False)
        rule = _RULES.get(info.kind, "solo")
        texts = list(info.candidates)
        if info.kind == "proposer" and info.role is not None:
            fam = self.skill.role_family(info.role)
            if fam is not None and self.profiles.role_families[fam].predecessors == "synth":
                rule = "synth"  # a reviewing role weighs its predecessors' answers
        if info.kind == "synthesizer" and self.profiles.behaviour.synthesizer_sees_predecessors:
            texts += [text for _, text in info.context]
        p = self.skill.p_solo(model, item, info.role)
        cands = self.answers.candidates(item, texts) if rule != "solo" else []
        decision = decide(
            rule,
            p,
            cands,
            susceptibility=profile.susceptibility,
            synthesis_skill=profile.synthesis_skill,
            self_solve_factor=self.profiles.behaviour.self_solve_factor,
            u=st.uniform,
        )
        answer = self._answer_text(item, decision, st)
        malformed = st.uniform("malformed") < profile.malformed_rate
        if rule == "synth":
            style = f"synth:{style}"
        direct = info.kind == "single" and not info.cot
        if malformed:
            tail = malformed_tail(style, st.rng("malformed-text"))
            text = tail if direct else body(style) + "\n\n" + tail
        elif direct:
            text = answer_block(kind, answer)
        else:
            text = body(style) + "\n\n" + answer_block(kind, answer)
        return Reply(text, item.id, decision.correct and not malformed, decision.how, malformed)

    def _answer_text(self, item: Item, decision: Decision, st: Stream) -> str:
        if decision.answer is not None:
            return decision.answer.raw
        if decision.correct:
            return self.answers.gold(item)
        return self.answers.pick_wrong(item, st.uniform("wrong"))

    def _generic(self, profile: ModelProfile, info: PromptInfo, st: Stream) -> Reply:
        dist = self.profiles.generic.output_tokens
        target = round(draw_lognormal(dist, st, "length") * profile.verbosity)
        text = generic_reply(target, st.rng("prose"))
        if info.domain == "general" and info.role not in self._answerless.get("general", set()):
            final = _GENERAL_ANSWERS[int(st.uniform("general") * len(_GENERAL_ANSWERS))]
            text += f"\n\nFinal answer: {final}"
        return Reply(text, None, None, "generic", False)


def _parse(messages: Sequence[Mapping[str, str]]) -> PromptInfo:
    try:
        return parse_prompt(messages)
    except Exception:  # a parser bug must not take the server down
        log.exception("emulator_prompt_parse_failed")
        return PromptInfo(kind="unknown")


def _answerless(domain: str) -> set[str]:
    try:
        return answerless_roles(domain)
    except Exception:
        return set()


def _truncate(text: str, limit: int | None) -> tuple[str, Literal["stop", "length"]]:
    if limit is None:
        return text, "stop"
    tokens = count_tokens(text)
    if tokens <= limit:
        return text, "stop"
    cut = max(1, int(len(text) * limit / tokens))
    while cut > 1 and count_tokens(text[:cut]) > limit:
        cut = int(cut * 0.9)
    return text[:cut], "length"


def _default_code(profiles: PoolProfiles) -> CodeVariants | None:
    try:
        from hieramas.emulator.codebugs import CodeBugs
    except ImportError:
        log.warning("emulator_no_code_bugs")
        return None
    return CodeBugs(n_variants=profiles.behaviour.code_bug_variants)


def _resolve_data_dir(explicit: str | Path | None) -> Path:
    return data_dir(explicit)
