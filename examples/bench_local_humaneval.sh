#!/usr/bin/env bash
# The REAL local-model HumanEval runs of docs/results.md, one method per `hieramas bench`
# invocation (llama.cpp holds one model at a time; run them one after another, never in
# parallel).  Needs `bash scripts/install_local.sh` first.  Prices are NOTIONAL.
# Usage: bash examples/bench_local_humaneval.sh [OUT_DIR] [N_SINGLE] [N_MULTI]
set -euo pipefail
out=${1:-bench-local}
n_single=${2:-40}
n_multi=${3:-10}
mkdir -p "$out"
bench=(hieramas bench humaneval --local --split all --concurrency 1)
run() {
    local name=$1
    shift
    echo "=== $name $(date -u +%T)"
    "${bench[@]}" "$@" --json "$out/$name.json" 2>"$out/$name.log" | tee "$out/$name.txt"
}
run single-1.5b --limit "$n_single" -m single@qwen2.5-coder-1.5b
run single-0.5b --limit "$n_single" -m single@qwen2.5-coder-0.5b
run single-135m --limit "$n_single" -m single@smollm2-135m
run hieramas-local --limit "$n_multi" --config examples/local.yaml
run moa --limit "$n_multi" -m moa --proposers qwen2.5-coder-0.5b,smollm2-135m \
    --aggregator qwen2.5-coder-1.5b --layers 1
run sc3-0.5b --limit "$n_multi" -m self-consistency@qwen2.5-coder-0.5b --k 3 --temperature 0.7
