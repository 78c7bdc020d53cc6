"""Mixtures of agents over real HTTP: weak proposers plus a skilled synthesizer beat the best
single proposer; with a poor synthesizer they do not.

Pool: ``tests/emulator/data/mixture.yaml`` (three proposers at 45/60/75 % on MMLU-Redux; a
skilled synthesizer, 65 % solo with synthesis skill 0.9, and a poor one, 55 % solo with skill 0).
Expected from the model: skilled ≈ 85 %, poor ≈ 63 %, best proposer 75 %; at n = 400 items the
standard error of a paired difference is ≤ 2.3 points, so the 4-point margins below (≥ 2.6
standard errors from the expected gaps of ~10 points) cannot plausibly be flipped by noise.
All figures are *emulated*.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from hieramas.emulator.runner import running_emulator
from hieramas.tasks import prompts
from hieramas.tasks.datasets import load
from hieramas.tasks.graders import grade

POOL = Path(__file__).parent / "data" / "mixture.yaml"
PROPOSERS = ("weak-a", "weak-b", "weak-c")
ROLE = "Knowledgeable Expert"
N_ITEMS = 400
MARGIN = 0.04


def _text(client: httpx.Client, model: str, messages: list[dict[str, str]]) -> str:
    resp = client.post("/chat/completions", json={"model": model, "messages": messages})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["choices"][0]["message"]["content"])


@pytest.mark.slow
def test_synthesis_skill_decides_whether_a_mixture_beats_its_best_member(
    datasets_dir: Path,
) -> None:
    all_items = load("mmlu_redux")
    items = all_items[:: len(all_items) // N_ITEMS][:N_ITEMS]
    right = dict.fromkeys([*PROPOSERS, "skilled-synth", "poor-synth"], 0)
    with (
        running_emulator(profiles_path=POOL, seed=0, data_dir=datasets_dir) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        for item in items:
            proposal_msgs = prompts.proposer_messages("mmlu", ROLE, item.question, [])
            proposals = [_text(client, model, proposal_msgs) for model in PROPOSERS]
            for model, text in zip(PROPOSERS, proposals, strict=True):
                right[model] += grade(item, text).correct
            synth_msgs = prompts.synthesizer_messages("mmlu", ROLE, item.question, proposals, [])
            for synth in ("skilled-synth", "poor-synth"):
                right[synth] += grade(item, _text(client, synth, synth_msgs)).correct
    acc = {name: hits / len(items) for name, hits in right.items()}
    best = max(acc[m] for m in PROPOSERS)
    print(f"\nemulated MMLU-Redux accuracy, n={len(items)}, pool {POOL.name}, seed 0:")
    for name, value in acc.items():
        print(f"  {name:14s} {value:.3f}")
    assert acc["skilled-synth"] >= best + MARGIN
    assert acc["poor-synth"] <= best - MARGIN
