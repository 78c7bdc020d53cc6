#!/usr/bin/env bash
# Create .venv and install HieraMAS into it (idempotent).
#   bash scripts/bootstrap.sh          runtime + dev tools
# torch is pinned to the CPU build 2.13.0 and installed before anything that
# depends on it; a looser requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
VPY=.venv/bin/python
stamp=.venv/.hieramas-installed
want=$(cat pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
"$VPY" -m pip install --quiet --upgrade pip
"$VPY" -m pip install --quiet "torch==2.13.0"
"$VPY" -m pip install --quiet -e '.[dev]'
echo "$want" > "$stamp"
