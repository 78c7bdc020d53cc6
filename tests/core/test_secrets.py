"""Secrets never reach logs: URL credentials, keys and bearer tokens are masked; a full run
with a NATS login per component leaks no password or LLM key into logs, traces or the store."""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import yaml
from accounts_support import accounts_server

from hieramas.bus import Bus
from hieramas.learner.process import LearnerProcess
from hieramas.logs import configure_logging
from hieramas.natsconn import NatsSettings, redact_url
from hieramas.natsserver import free_port
from hieramas.processes import spawn, terminate
from hieramas.traces import ReadStats, replay
from hieramas.wire import Subjects
from hieramas.wire.events import event_json


def test_redact_url_masks_password_and_token() -> None:
    assert redact_url("nats://alice:s3cret@10.0.0.1:4222") == "nats://alice:***@10.0.0.1:4222"
    assert redact_url("nats://tok3n@host:4222") == "nats://***@host:4222"
    assert redact_url("nats://a:b@h1:1,nats://h2:2") == "nats://a:***@h1:1,nats://h2:2"
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


def test_settings_repr_and_env(monkeypatch: object) -> None:
    import os

    os.environ["HIERAMAS_NATS_PASSWORD"] = "hunter2"
    try:
        settings = NatsSettings.from_env("nats://bob@h:4222")
        assert settings.password == "hunter2"
        assert "hunter2" not in repr(settings)
        assert settings.connect_kwargs()["password"] == "hunter2"
    finally:
        del os.environ["HIERAMAS_NATS_PASSWORD"]


def test_log_pipeline_masks_secrets() -> None:
    buffer = io.StringIO()
    old = sys.stderr
    sys.stderr = buffer
    try:
        configure_logging("info", json=True)
        structlog.get_logger("t").warning(
            "connecting",
            url="nats://alice:s3cret@h:4222",
            api_key="sk-live-123",
            api_key_env="OPENROUTER_API_KEY",
            header="Authorization: Bearer sk-abc.def",
        )
    finally:
        sys.stderr = old
        structlog.reset_defaults()
    line = json.loads(buffer.getvalue().strip().splitlines()[-1])
    assert "s3cret" not in buffer.getvalue()
    assert "sk-live-123" not in buffer.getvalue()
    assert "sk-abc" not in buffer.getvalue()
    assert line["api_key_env"] == "OPENROUTER_API_KEY"


# ---------------------------------------------------------------- a full run


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return spawn(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)


def _wait_log(path: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        assert process.poll() is None, f"{path.name}: exited\n{path.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"{path.name}: no {text!r}\n{path.read_text()[-2000:]}"
        time.sleep(0.1)


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} does not answer"
        time.sleep(0.1)


def _keyed_mmlu_config() -> str:
    """The shipped EMULATED MMLU config, its endpoint keyed by an allowed variable."""
    text = resources.files("hieramas").joinpath("configs/mmlu.yaml").read_text()
    data = yaml.safe_load(text)
    data["endpoints"]["emulator"]["api_key_env"] = LLM_KEY_VARIABLE
    data["planner"] = {"kind": "learned"}
    return yaml.safe_dump(data, sort_keys=False)


LLM_KEY_VARIABLE = "HIERAMAS_KEY_EMULATOR"


def worker_id(logs: Path) -> str:
    for line in (logs / "worker.log").read_text().splitlines():
        if '"worker.started"' in line:
            return str(json.loads(line)["worker"])
    raise AssertionError("the worker did not log its id")


@pytest.mark.slow
def test_a_full_run_with_a_login_per_component_answers_and_leaks_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Emulator, controller, worker and learner as processes, each with its own NATS user
    (deploy/nats/users.conf), debug logs on: a client's queries are answered with the
    learner's policy, no component hits a permission it lacks, and no password or LLM key
    appears in any log, in the trace stream, or anywhere in the JetStream store."""
    llm_key = "sk-emulated-" + secrets.token_hex(12)
    hieramas = [sys.executable, "-m", "hieramas", "--log-level", "debug", "--log-json"]
    logs = tmp_path / "logs"
    logs.mkdir()
    processes: list[subprocess.Popen[bytes]] = []
    learner: LearnerProcess | None = None
    with accounts_server(tmp_path / "nats") as accounts:
        try:
            port = free_port()
            emulator_url = f"http://127.0.0.1:{port}/v1"
            emu_args = [sys.executable, "-m", "hieramas.emulator", "serve", "--port", str(port),
                        "--seed", "0", "--latency-scale", "0"]  # fmt: skip
            emulator = _spawn(emu_args, logs / "emulator.log", accounts.env("client"))
            processes.append(emulator)
            controller_args = [*hieramas, "controller", "--emulator-url", emulator_url]
            processes.append(
                _spawn(controller_args, logs / "controller.log", accounts.env("controller"))
            )
            worker_env = accounts.env("worker") | {LLM_KEY_VARIABLE: llm_key}
            processes.append(_spawn([*hieramas, "worker"], logs / "worker.log", worker_env))
            _wait_log(logs / "controller.log", "controller running", processes[1])
            _wait_log(logs / "worker.log", "worker.started", processes[2])
            _wait_log(logs / "emulator.log", "emulated LLM pool on", emulator, timeout=120)
            wait_http(f"{emulator_url}/models")

            config = tmp_path / "mmlu.yaml"
            config.write_text(_keyed_mmlu_config())
            applied = subprocess.run(
                [*hieramas, "config", "apply", str(config)], env=accounts.env("controller"),
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert applied.returncode == 0, applied.stderr
            (logs / "config-apply.log").write_text(applied.stdout + applied.stderr)

            for name, value in accounts.env("learner").items():
                monkeypatch.setenv(name, value)
            learner = LearnerProcess(
                accounts.url, tmp_path / "learner", ["--embedder", "hash-32", "--batch", "4"]
            )
            root = int(learner.start(wait="running").wait_phase("running")["version"])

            def ask(question: str) -> dict[str, Any]:
                done = subprocess.run(
                    [*hieramas, "ask", "--json", "--timeout", "60", question],
                    env=accounts.env("client"), capture_output=True, text=True, timeout=90,
                )  # fmt: skip
                with (logs / "ask.log").open("a") as out:
                    out.write(done.stdout + done.stderr)
                assert done.returncode == 0, done.stdout + done.stderr
                result: dict[str, Any] = json.loads(done.stdout)
                return result

            deadline = time.monotonic() + 60
            while (result := ask("Which gas do plants take in? A) O2 B) CO2"))[
                "policy_version"
            ] != root:
                assert time.monotonic() < deadline, result
            assert result["status"] == "ok" and result["text"], result  # EMULATED LLMs
            assert {n["worker"] for n in result["nodes"].values()} == {worker_id(logs)}
        finally:
            if learner is not None:
                learner.stop()
            for process in reversed(processes):
                terminate(process, 10)

        bus = Bus(accounts.login("learner")).start()  # the learner's login reads traces
        try:
            stats = ReadStats()
            events = bus.call(replay(bus, Subjects(), stats=stats), 30)
        finally:
            bus.stop()
        server_log = accounts.server_log()
        passwords = list(accounts.passwords.values())

    traced = "\n".join(event_json(e) for e in events)
    assert stats.skipped == 0 and any(e.event == "llm_call" for e in events)
    texts = {p.name: p.read_text(errors="replace") for p in logs.iterdir()}
    texts["learner.log"] = (tmp_path / "learner" / "learner.log").read_text(errors="replace")
    texts["traces"] = traced
    texts["nats-server.log"] = server_log
    for secret in (*passwords, llm_key):
        for name, text in texts.items():
            assert secret not in text, f"a secret in {name}"
        for path in (tmp_path / "nats" / "js").rglob("*"):  # configs, traces, policies on disk
            if path.is_file() and path.name != "nats-server.log":
                assert secret.encode() not in path.read_bytes(), f"a secret in {path}"
    for name, text in texts.items():  # every component did its job within its rights
        assert "permission_denied" not in text and "Violation" not in text, name
    assert texts["controller.log"].count("bus.connected") >= 1
