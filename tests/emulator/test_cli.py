"""The command line: ``python -m hieramas.emulator serve`` as a real subprocess, and errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from hieramas.emulator.cli import app
from hieramas.natsserver import free_port


def _env(datasets_dir: Path) -> dict[str, str]:
    return {**os.environ, "HIERAMAS_DATA_DIR": str(datasets_dir), "COLUMNS": "200"}


def test_serve_subprocess_answers_and_stops(datasets_dir: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hieramas.emulator", "serve", "--port", str(port),
         "--seed", "3", "--latency-scale", "0"],
        env=_env(datasets_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "emulator did not start"
            time.sleep(0.1)
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()
        assert health["seed"] == 3 and health["emulated"] is True and health["items_indexed"] > 1000
        resp = httpx.post(
            f"{url}/chat/completions",
            json={"model": "gemma-3-27b", "messages": [{"role": "user", "content": "Hi there"}]},
        )
        assert resp.status_code == 200 and resp.json()["emulated"] is True
    finally:
        proc.terminate()
        proc.wait(10)


def test_bad_profile_file_exits_with_a_clear_message(tmp_path: Path, datasets_dir: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("version: 1\nname: x\nmodels: {}\n")
    done = subprocess.run(
        [sys.executable, "-m", "hieramas.emulator", "serve", "--profiles", str(bad), "--port", "1"],
        env=_env(datasets_dir), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "p.yaml" in done.stderr and "behaviour" in done.stderr


def test_models_and_calibration_commands(datasets_dir: Path) -> None:
    runner = CliRunner()
    models = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert models.exit_code == 0 and "gpt-4o-mini" in models.stdout
    calib = runner.invoke(
        app, ["calibration", "--data-dir", str(datasets_dir)], env={"COLUMNS": "200"}
    )
    assert calib.exit_code == 0 and "emulated" in calib.stdout
    assert "llama-8b" in calib.stdout and "0.510" in calib.stdout
