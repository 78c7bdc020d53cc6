"""How the multi-level reward credits a running supernode against a dropped one.

Reads a learner's ``episodes.jsonl`` (``RUN/learner/episodes.jsonl``) and, per range of
policy versions, prints the mean credit ``E_i`` (:func:`hieramas.learner.rewards.node_rewards`)
of the supernodes that ran and of those the plan dropped, with the final reward ``R`` of
the same episodes.  A dropped supernode is credited with ``R`` alone (α = 0), a running one
with ``α·r_i + (1 − α)·R`` (``--dropped peers``: a dropped one with its running peers'
mean ``r_j`` in place of ``r_i``); the gap between them is what each synthesizer slot sees when it
weighs ``skip`` (docs/results.md, the fifth MMLU check).

    python scripts/skip_credit.py RUN/learner/episodes.jsonl --lam 3 --ranges 1-8,1-13,14-40 \
        [--dropped final|peers]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import fmean

from hieramas.learner.episode import Episode
from hieramas.learner.rewards import RewardConfig, final_reward, node_rewards


def _ranges(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.append((int(lo), int(hi or lo)))
    return out


def _mean(xs: list[float] | list[bool]) -> float:
    return fmean(xs) if xs else float("nan")


def main() -> None:
    """Print the credit of running and dropped supernodes per version range."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("episodes", type=Path)
    parser.add_argument("--lam", type=float, default=300.0, help="λ = λ' of the run")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument(
        "--dropped", choices=["final", "peers"], default="final", help="the run's --dropped-credit"
    )
    parser.add_argument(
        "--ranges", default="1-1000000", help="policy-version ranges, e.g. 1-8,9-40"
    )
    args = parser.parse_args()
    cfg = RewardConfig(alpha=args.alpha, lam=args.lam, lam_unsolved=args.lam, dropped=args.dropped)
    rows = [json.loads(line) for line in args.episodes.open()]
    # the log row drops the query's text, which the rewards do not read
    train = [
        Episode.from_json({**row, "query_text": ""})
        for row in rows
        if row.get("disposition") == "train"
    ]
    print(
        "versions | episodes | final acc | running: n, mean E_i, their R, own acc | dropped: n, mean E_i"
    )
    for lo, hi in _ranges(args.ranges):
        run_e, run_r, own, drop_e, final = [], [], [], [], []
        for ep in (e for e in train if lo <= (e.policy_version or 0) <= hi):
            big_r, credit = final_reward(ep, cfg), node_rewards(ep, cfg)
            final.append(bool(ep.final_correct))
            for name, node in ep.nodes.items():
                if node.answerless:
                    continue
                if node.ran:
                    run_e.append(credit[name])
                    run_r.append(big_r)
                    own.append(bool(node.correct))
                else:
                    drop_e.append(credit[name])
        if not final:
            print(f"{lo}-{hi} | 0")
            continue
        print(
            f"{lo}-{hi} | {len(final)} | {_mean(final):.3f} | {len(run_e)}, {_mean(run_e):.4f}, "
            f"{_mean(run_r):.4f}, {_mean(own):.3f} | {len(drop_e)}, {_mean(drop_e):.4f}"
        )


if __name__ == "__main__":
    main()
