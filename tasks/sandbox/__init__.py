"""Isolated execution of untrusted Python (HumanEval completions and their tests)."""

from __future__ import annotations

from hieramas.tasks.sandbox.runner import (
    Isolation,
    Outcome,
    Sandbox,
    SandboxLimits,
    SandboxResult,
    describe,
    network_isolation,
)

__all__ = [
    "Isolation",
    "Outcome",
    "Sandbox",
    "SandboxLimits",
    "SandboxResult",
    "describe",
    "network_isolation",
]
