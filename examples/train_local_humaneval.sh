#!/usr/bin/env bash
# The REAL local-model Stage-1 run of docs/results.md: train the policy on HumanEval items
# outside HumanEval/0-39 (48 training queries), then evaluate its best version greedily on
# HumanEval/0-39, the items of the other real rows.  Needs `bash scripts/install_local.sh`.
# Prices are NOTIONAL.  Both steps are resumable: run this script again after a crash or a
# kill and it continues where it stopped (the training run dir and the bench --resume file).
# Usage: bash examples/train_local_humaneval.sh [RUN_DIR]
set -euo pipefail
run=${1:-runs/real-humaneval/train}
mkdir -p "$run"
echo "=== train $(date -u +%T)"
hieramas train --local --dataset humaneval --holdout 40 --queries 48 --batch 8 \
    --concurrency 1 --eval-every 0 --eval-items 10 --seed 0 --run-dir "$run"
echo "=== test $(date -u +%T)"
hieramas bench humaneval --local --split all --concurrency 1 --limit 40 --resume \
    --config "$run/eval.yaml" --json "$run/test.json"
echo "=== done $(date -u +%T)"
