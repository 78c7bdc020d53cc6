#!/usr/bin/env bash
# The test command (README and CI): set up .venv if needed, lint, type-check, run every test.
#   bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ "${HIERAMAS_LOCAL_MODELS:-0}" = "1" ] && [ -f scripts/install_local.sh ]; then
    bash scripts/install_local.sh --small
    export HIERAMAS_REQUIRE_LOCAL=1
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python scripts/typecheck.py
.venv/bin/python -m pytest "$@"
