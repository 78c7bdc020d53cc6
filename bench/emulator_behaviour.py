"""Does the emulated pool have the structure the learner needs?  (figures are *emulated*)

Runs in-process against the default profiles (seed 0) with the real prompt
templates and graders, and prints:

1. mixtures: three proposers + a synthesizer vs the best single proposer, for
   a skilled and a poor synthesizer (MMLU-Redux and MATH-500);
2. role fit: the same model as a matching specialist, a generalist and a
   mismatched specialist on MMLU law and math subjects;
3. topology: accuracy of random DAGs over the same 4 supernodes, models and
   queries, and how its spread compares with the binomial sampling noise.

    .venv/bin/python bench/emulator_behaviour.py [--items 300] [--dags 16]
        [--topology-pool mixed|similar] [--only-topology]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
from collections.abc import Sequence

from hieramas.emulator.api import ChatCompletionRequest
from hieramas.emulator.engine import Engine
from hieramas.tasks import prompts
from hieramas.tasks.answers import extract_answer
from hieramas.tasks.datasets import Item, load
from hieramas.tasks.graders import grade

Messages = list[dict[str, str]]


class Runner:
    """In-process calls with graded results (grades memoised per reply text)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._grades: dict[tuple[str, str], bool] = {}

    async def text(self, model: str, messages: Messages, seed: int | None = None) -> str:
        body = {"model": model, "messages": messages, "seed": seed}
        done = await self.engine.complete(ChatCompletionRequest.model_validate(body))
        return done.choices[0].text

    def correct(self, item: Item, text: str) -> bool:
        key = (item.id, text)
        if key not in self._grades:
            self._grades[key] = grade(item, text).correct
        return self._grades[key]


def _spread(items: Sequence[Item], n: int) -> list[Item]:
    return list(items[:: max(1, len(items) // n)][:n])


async def mixtures(run: Runner, n: int) -> None:
    print("\n1. mixtures (3 proposers, one synthesizer; emulated accuracy)")
    setups = {
        "mmlu": ("mmlu_redux", "Knowledgeable Expert", ("llama-8b", "gemma-3-27b", "qwen3-8b")),
        "math": ("math500", "Math Solver", ("llama-8b", "gpt-4o-mini", "qwen3-8b")),
    }
    for domain, (dataset, role, proposers) in setups.items():
        items = _spread(load(dataset), n)
        hits = dict.fromkeys([*proposers, "synth gemma-3-27b", "synth llama-8b"], 0)
        for item in items:
            msgs = prompts.proposer_messages(domain, role, item.question, [])
            texts = [await run.text(m, msgs) for m in proposers]
            for model, text in zip(proposers, texts, strict=True):
                hits[model] += run.correct(item, text)
            synth_msgs = prompts.synthesizer_messages(domain, role, item.question, texts, [])
            for synth in ("gemma-3-27b", "llama-8b"):
                hits[f"synth {synth}"] += run.correct(item, await run.text(synth, synth_msgs))
        best = max(hits[m] for m in proposers) / len(items)
        print(f"  {domain} (n={len(items)}, role {role}): best single proposer {best:.3f}")
        for name, h in hits.items():
            print(f"    {name:20s} {h / len(items):.3f}")


async def role_fit(run: Runner, n: int) -> None:
    print("\n2. role fit (same model, different roles; emulated accuracy)")
    mmlu = load("mmlu_redux")
    cases = {
        "law subjects": ({"professional_law", "international_law", "jurisprudence"}, "Lawyer"),
        "math subjects": (
            {"college_mathematics", "high_school_mathematics", "elementary_mathematics"},
            "Mathematician",
        ),
    }
    for label, (subjects, specialist) in cases.items():
        items = _spread([i for i in mmlu if i.subject in subjects], n)
        for model in ("llama-8b", "gpt-4o-mini"):
            row = []
            for role in (specialist, "Knowledgeable Expert", "Psychologist"):
                hits = 0
                for item in items:
                    msgs = prompts.proposer_messages("mmlu", role, item.question, [])
                    hits += run.correct(item, await run.text(model, msgs))
                row.append(f"{role} {hits / len(items):.3f}")
            print(f"  {label} (n={len(items)}) {model:12s} " + " | ".join(row))


def random_dag(nodes: int, rng: random.Random, density: float) -> list[tuple[int, int]]:
    """A random DAG: random order, a spanning chain of predecessors, extra forward edges."""
    order = list(range(nodes))
    rng.shuffle(order)
    edges = {(order[rng.randrange(i)], order[i]) for i in range(1, nodes)}
    for i in range(nodes):
        for j in range(i + 1, nodes):
            if rng.random() < density:
                edges.add((order[i], order[j]))
    return sorted(edges)


async def run_dag(
    run: Runner,
    item: Item,
    edges: list[tuple[int, int]],
    nodes: list[tuple[str, list[str], str]],
    replicate: int = 0,
) -> bool:
    preds: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
    for a, b in edges:
        preds[b].append(a)
    outputs: dict[int, str] = {}
    pending = set(range(len(nodes)))
    while pending:
        ready = [i for i in sorted(pending) if all(p in outputs for p in preds[i])]
        for i in ready:
            role, proposers, synth = nodes[i]
            upstream = [(nodes[p][0], outputs[p]) for p in preds[i]]
            msgs = prompts.proposer_messages("mmlu", role, item.question, upstream)
            props = [
                await run.text(m, msgs, seed=100 * replicate + k) for k, m in enumerate(proposers)
            ]
            smsgs = prompts.synthesizer_messages("mmlu", role, item.question, props, upstream)
            outputs[i] = await run.text(synth, smsgs, seed=replicate)
            pending.discard(i)
    finals = [(nodes[i][0], outputs[i]) for i in range(len(nodes))]
    keys = {extract_answer("mmlu", t, choices=item.choices) for _, t in finals}
    if len(keys) == 1:
        return run.correct(item, finals[0][1])
    decision = await run.text(
        "gpt-4o-mini", prompts.decision_messages("mmlu", item.question, finals)
    )
    return run.correct(item, decision)


TOPOLOGY_POOLS = {
    # one strong supernode and three weak ones: where the strong one sits should matter
    "mixed": [
        ("Knowledgeable Expert", ["gpt-5-mini", "qwen3-80b"], "gpt-5-mini"),
        ("Historian", ["llama-8b", "llama-8b"], "llama-8b"),
        ("Critic", ["llama-8b", "gemma-3-27b"], "llama-8b"),
        ("Psychologist", ["llama-8b", "llama-8b"], "llama-8b"),
    ],
    # four supernodes of similar strength
    "similar": [
        ("Lawyer", ["llama-8b", "gemma-3-27b"], "gemma-3-27b"),
        ("Historian", ["llama-8b", "qwen3-8b"], "llama-8b"),
        ("Critic", ["gpt-4o-mini", "llama-8b"], "qwen3-8b"),
        ("Mathematician", ["qwen3-8b", "gemma-3-27b"], "llama-8b"),
    ],
}


async def topology(run: Runner, n: int, dags: int, pool: str) -> None:
    print(f"\n3. topology, {pool} supernodes (random DAGs, same nodes/models/queries; emulated)")
    nodes = TOPOLOGY_POOLS[pool]
    items = _spread(load("mmlu_redux"), n)
    rng = random.Random(0)
    accs = []
    for d in range(dags):
        edges = random_dag(len(nodes), rng, rng.uniform(0.1, 0.9))
        hits = sum([await run_dag(run, item, edges, nodes) for item in items])
        accs.append(hits / len(items))
        print(f"  dag {d:2d} edges {edges}: {accs[-1]:.3f}")
    # sampling noise: the same DAG re-run with other per-call draws (request seeds)
    edges0 = random_dag(len(nodes), random.Random(0), 0.5)
    reps = []
    for r in range(1, 7):
        reps.append(
            sum([await run_dag(run, item, edges0, nodes, r) for item in items]) / len(items)
        )
    spread, noise = statistics.stdev(accs), statistics.stdev(reps)
    print(
        f"  n={len(items)} per DAG: mean {statistics.mean(accs):.3f}, range "
        f"{min(accs):.3f}-{max(accs):.3f}, sd across DAGs {spread:.4f}; same DAG re-drawn "
        f"6 times: sd {noise:.4f} -> ratio {spread / noise:.2f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--dags", type=int, default=16)
    parser.add_argument("--topology-pool", choices=sorted(TOPOLOGY_POOLS), default="mixed")
    parser.add_argument("--only-topology", action="store_true")
    args = parser.parse_args()
    engine = Engine.create(seed=0, latency_scale=0.0)
    print(f"emulated pool '{engine.profiles.name}' ({engine.profile_source}), seed 0")
    run = Runner(engine)
    if not args.only_topology:
        await mixtures(run, args.items)
        await role_fit(run, min(args.items, 200))
    await topology(run, args.items, args.dags, args.topology_pool)


if __name__ == "__main__":
    asyncio.run(main())
