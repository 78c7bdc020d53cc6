"""The offline emulated LLM pool: an OpenAI-compatible server with profile-driven behaviour.

Programmatic use (tests, benchmarks)::

    from hieramas.emulator import running_emulator

    with running_emulator(seed=0, latency_scale=0.0) as base_url:  # http://127.0.0.1:PORT/v1
        ...

``build_app(...)`` returns the ASGI app; ``Engine.create(...)`` answers
requests in-process without HTTP.  Everything it produces is *emulated*.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hieramas.emulator.engine import Engine
    from hieramas.emulator.profiles import PoolProfiles, ProfileError, load_profiles
    from hieramas.emulator.runner import running_emulator
    from hieramas.emulator.server import build_app, create_app

__all__ = [
    "Engine",
    "PoolProfiles",
    "ProfileError",
    "build_app",
    "create_app",
    "load_profiles",
    "running_emulator",
]

_WHERE = {
    "Engine": "engine",
    "PoolProfiles": "profiles",
    "ProfileError": "profiles",
    "load_profiles": "profiles",
    "running_emulator": "runner",
    "build_app": "server",
    "create_app": "server",
}


def __getattr__(name: str) -> Any:
    """Import the public names lazily (``import hieramas.emulator`` stays cheap)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"hieramas.emulator.{module}"), name)
