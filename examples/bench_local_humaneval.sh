#!/usr/bin/env bash
# The REAL local-model HumanEval runs of docs/results.md, one method per `hieramas bench`
# invocation (llama.cpp holds one model at a time; run them one after another, never in
# parallel).  Needs `bash scripts/install_local.sh` first.  Prices are NOTIONAL.
# Every run is resumable: its JSON file is rewritten after each graded item, and running this
# script again continues where a crash or a stop left off (--resume skips graded items).
# Usage: bash examples/bench_local_humaneval.sh [OUT_DIR] [N]
set -euo pipefail
out=${1:-bench-local}
n=${2:-40}
mkdir -p "$out"
bench=(hieramas bench humaneval --local --split all --concurrency 1 --limit "$n" --resume)
run() {
    local name=$1
    shift
    echo "=== $name $(date -u +%T)"
    "${bench[@]}" "$@" --json "$out/$name.json" 2>>"$out/$name.log" | tee "$out/$name.txt"
}
run single-1.5b -m single@qwen2.5-coder-1.5b
run single-0.5b -m single@qwen2.5-coder-0.5b
run single-135m -m single@smollm2-135m
run sc3-0.5b -m self-consistency@qwen2.5-coder-0.5b --k 3 --temperature 0.7
run moa -m moa --proposers qwen2.5-coder-0.5b,smollm2-135m --aggregator qwen2.5-coder-1.5b \
    --layers 1
run dag --config examples/local.yaml
