"""``hieramas local`` command line (no model download, no server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hieramas.llm.local import MODEL_DIR_ENV
from hieramas.llm.local.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def empty_model_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


def test_list_shows_pool_and_notional_prices(empty_model_dir: Path) -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    for alias in ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "smollm2-135m"):
        assert alias in result.output
    assert "notional" in result.output
    assert "yes" not in result.output  # nothing assembled in an empty cache


def test_unknown_model_exits_2_with_message() -> None:
    result = runner.invoke(app, ["fetch", "--models", "gpt-9"])
    assert result.exit_code == 2
    assert "unknown local model 'gpt-9'" in result.output


def test_serve_without_models_explains_how_to_fetch() -> None:
    result = runner.invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == 2
    assert "hieramas local fetch" in result.output


def test_serve_named_but_missing_model_is_refused() -> None:
    result = runner.invoke(app, ["serve", "--models", "135m", "--port", "0"])
    assert result.exit_code == 2
    assert "not assembled: 135m" in result.output or "llama-cpp-python" in result.output
