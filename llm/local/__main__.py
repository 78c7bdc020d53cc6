"""``python -m hieramas.llm.local`` = ``hieramas local``."""

from __future__ import annotations

from hieramas.llm.local.cli import app

app(prog_name="hieramas local")
