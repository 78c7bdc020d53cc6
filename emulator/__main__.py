"""``python -m hieramas.emulator``: the emulator's command line."""

from __future__ import annotations

from hieramas.emulator.cli import app

if __name__ == "__main__":
    app()
