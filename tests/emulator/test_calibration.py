"""Calibration: each model's solo accuracy, graded by the tasks graders, is within ±3 points
of its profile target.

The sample sizes keep the binomial standard error at or below ~1.2 points, so ±3 points is
≥ 2.5 standard errors for every model (300 items would give ~2.6 points of noise at p = 0.5).
All figures are *emulated*.  The replies come from the engine in-process (the server's code path
minus HTTP framing); ``test_http_replies_equal_engine_replies`` shows the server returns the very
same texts, so the figures hold for HTTP clients too.
"""

from __future__ import annotations

import httpx
import pytest

from hieramas.emulator.engine import Engine
from hieramas.emulator.profiles import load_profiles
from hieramas.tasks import prompts
from hieramas.tasks.datasets import Item, load
from hieramas.tasks.graders import grade

# domain -> (dataset, items, request seeds per item)
PLAN = {"mmlu": ("mmlu_redux", 1500, 1), "math": ("math500", 500, 4), "gsm8k": ("gsm8k", 1200, 1)}
TOLERANCE = 0.03


def _spread(items: list[Item], n: int) -> list[Item]:
    step = max(1, len(items) // n)
    return items[::step][:n]


@pytest.mark.slow
@pytest.mark.parametrize("domain", list(PLAN))
async def test_solo_accuracy_matches_targets(engine: Engine, domain: str) -> None:
    dataset, n, seeds = PLAN[domain]
    items = _spread(load(dataset), n)
    pool = load_profiles()
    rows = []
    verdicts: dict[tuple[str, str], bool] = {}  # direct replies repeat across models: grade once
    for model, profile in pool.models.items():
        right = total = 0
        for item in items:
            messages = prompts.single_messages(domain, item.question)
            for seed in range(seeds):
                req_seed = None if seeds == 1 else seed
                completion = await engine.complete(_req(model, messages, req_seed))
                text = completion.choices[0].text
                verdict = verdicts.get((item.id, text))
                if verdict is None:
                    verdict = verdicts[(item.id, text)] = grade(item, text).correct
                right += verdict
                total += 1
        rows.append((model, profile.accuracy[domain], right / total, total))
    print(f"\nemulated solo accuracy, {domain} (seed 0, default profiles):")
    for model, target, acc, total in rows:
        print(f"  {model:12s} target {target:.3f}  emulated {acc:.3f}  (n={total})")
    for model, target, acc, _ in rows:
        assert abs(acc - target) <= TOLERANCE, (model, domain, target, acc)


def _req(model: str, messages: list[dict[str, str]], seed: int | None) -> object:
    from hieramas.emulator.api import ChatCompletionRequest

    return ChatCompletionRequest.model_validate(
        {"model": model, "messages": messages, "seed": seed}
    )


async def test_http_replies_equal_engine_replies(engine: Engine, emulator_url: str) -> None:
    items = _spread(load("math500"), 60) + _spread(load("mmlu_redux"), 60)
    async with httpx.AsyncClient(base_url=emulator_url) as client:
        for n, item in enumerate(items):
            model = ("llama-8b", "gpt-5-mini", "gemma-3-27b")[n % 3]
            messages = prompts.single_messages(item.domain, item.question, cot=n % 2 == 0)
            body = {"model": model, "messages": messages}
            via_http = (await client.post("/chat/completions", json=body)).json()
            local = await engine.complete(_req(model, messages, None))  # type: ignore[arg-type]
            assert via_http["choices"][0]["message"]["content"] == local.choices[0].text
            assert via_http["usage"] == local.body["usage"]
