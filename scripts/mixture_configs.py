"""Hand-set LLM mixtures of a dataset's default Stage-1 layout, as config files for
``hieramas bench -c`` (the fixed-config scan of docs/results.md, "Where the top of
MMLU-Redux is in the default layout").

Each config is the default training config of ``hieramas train`` (every role, two proposer
slots each, the complete DAG, decision on the pool's strongest model) with no planner:
every synthesizer gets one LLM, and a supernode's proposer slots take the listed LLMs in
turn.

    python scripts/mixture_configs.py SEED OUT_DIR [--dataset mmlu]
    hieramas bench mmlu --split test --limit 5000 --seed SEED -c OUT_DIR/NAME.yaml ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hieramas.learner.trainconfig import to_yaml, training_config

MIXTURES: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (synthesizer, the proposers' LLMs in turn)
    "all-gpt-5-mini": ("gpt-5-mini", ("gpt-5-mini",)),
    "all-qwen3-80b": ("qwen3-80b", ("qwen3-80b",)),
    "all-deepseek-v3": ("deepseek-v3", ("deepseek-v3",)),
    "synth-mini-prop-80b": ("gpt-5-mini", ("qwen3-80b",)),
    "synth-mini-prop-ds": ("gpt-5-mini", ("deepseek-v3",)),
    "synth-80b-prop-80b-ds": ("qwen3-80b", ("qwen3-80b", "deepseek-v3")),
    "s80b-p80b-nano": ("qwen3-80b", ("qwen3-80b", "gpt-5-nano")),
    "s80b-pds-nano": ("qwen3-80b", ("deepseek-v3", "gpt-5-nano")),
    "s80b-p80b-gemma": ("qwen3-80b", ("qwen3-80b", "gemma-3-27b")),
    "sds-p80b-ds": ("deepseek-v3", ("qwen3-80b", "deepseek-v3")),
    "s80b-pnano-8b": ("qwen3-80b", ("gpt-5-nano", "qwen3-8b")),
}
"""The scanned mixtures (synthesizer, proposers)."""


def mixture(doc: dict[str, Any], name: str, synth: str, props: tuple[str, ...]) -> dict[str, Any]:
    """``doc`` (with no planner) with every supernode set to ``synth`` over ``props`` in turn."""
    out: dict[str, Any] = json.loads(json.dumps(doc))
    out["name"] = name
    for spec in out["supernodes"].values():
        spec["proposers"] = [props[i % len(props)] for i in range(len(spec["proposers"]))]
        spec["synthesizer"] = synth
    return out


def main() -> None:
    """Write one YAML file per mixture into the output folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seed", type=int, help="the split and DAG seed of the default config")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--dataset", default="mmlu")
    args = parser.parse_args()
    doc = training_config(args.dataset, seed=args.seed)
    doc.pop("planner", None)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, (synth, props) in MIXTURES.items():
        (args.out_dir / f"{name}.yaml").write_text(to_yaml(mixture(doc, name, synth, props)))


if __name__ == "__main__":
    main()
