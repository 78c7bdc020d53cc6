"""The `hieramas` command as a user runs it: real subprocesses, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hieramas.natsserver import NatsServer
from support import config_yaml, node

HIERAMAS = [sys.executable, "-m", "hieramas"]


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def _one_node_config(tmp_path: Path, llm_url: str, proposers: list[str], synth: str) -> Path:
    """A config file with one supernode ("a", a Critic) on ``llm_url``'s scripted models."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config_yaml(llm_url, {"a": node("Critic", proposers, synth)}))
    return cfg


def _assert_gone(children: set[int]) -> None:
    """Every one of ``children`` exits within 10 s: no orphan processes."""
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children), "no orphan processes"


def test_up_serves_then_stops_cleanly_on_sigterm(tmp_path: Path, llm_url: str) -> None:
    cfg = _one_node_config(tmp_path, llm_url, ["fixed:B"], "fixed:B")
    up = subprocess.Popen(
        [*HIERAMAS, "up", "--config", str(cfg), "--no-emulator"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert up.stdout is not None
        first = up.stdout.readline().split()
        assert first[0] == "NATS", first
        url = first[1]
        assert up.stdout.readline().startswith("config version 1")
        children = _children(up.pid)
        assert children, "the embedded nats-server runs as a child"
        asked = subprocess.run(
            [*HIERAMAS, "ask", "--nats", url, "--json", "Which option?"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert asked.returncode == 0, asked.stderr
        result = json.loads(asked.stdout)
        for key in ("answer", "config_version", "cost_usd", "latency_s", "trace_id", "nodes"):
            assert key in result
        assert result["answer"] == "B"
        assert result["nodes"]["a"]["models"]["proposers"] == ["fixed:B"]
        for _ in range(20):  # traces are published in the background: wait for the query event
            tail = subprocess.run(
                [*HIERAMAS, "traces", "tail", "--nats", url, "--last", "3"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            events = [json.loads(line) for line in tail.stdout.splitlines()]
            if events and events[-1]["event"] == "query":
                break
            time.sleep(0.2)
        assert len(events) == 3
        assert events[-1]["trace_id"] == result["trace_id"]
        history = subprocess.run(
            [*HIERAMAS, "config", "history", "--nats", url, "--json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert [row["version"] for row in json.loads(history.stdout)] == [1]
        cfg2 = tmp_path / "c2.yaml"
        cfg2.write_text(
            config_yaml(llm_url, {"b": node("Lawyer", ["fixed:C"], "fixed:C")}, name="second")
        )
        applied = subprocess.run(
            [*HIERAMAS, "config", "apply", "--nats", url, str(cfg2)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert applied.returncode == 0, applied.stderr
        assert "applied config version 2" in applied.stdout
        shown = subprocess.run(
            [*HIERAMAS, "config", "show", "--nats", url, "--json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        current = json.loads(shown.stdout)
        assert current["version"] == 2 and current["source"] == "user"
        assert list(current["config"]["supernodes"]) == ["b"]
        up.send_signal(signal.SIGTERM)
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:
            up.kill()
    _assert_gone(children)


def test_invalid_config_file_is_refused_with_its_problems(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("endpoints: {}\nllms: {}\nsupernodes: {}\ndecision: nope\n")
    run = subprocess.run(
        [*HIERAMAS, "ask", "--config", str(cfg), "hi"], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert "decision: unknown LLM 'nope'" in run.stderr
    assert "at least one supernode" in run.stderr


def test_unreachable_nats_is_a_clear_error() -> None:
    run = subprocess.run(
        [*HIERAMAS, "config", "show", "--nats", "nats://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "cannot connect to NATS at nats://127.0.0.1:1" in run.stderr


@pytest.mark.parametrize("secret_url", ["nats://alice:hunter2@127.0.0.1:1"])
def test_credentials_in_urls_never_printed(secret_url: str) -> None:
    run = subprocess.run(
        [*HIERAMAS, "config", "show", "--nats", secret_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "hunter2" not in run.stderr + run.stdout
    assert "alice:***@" in run.stderr


def test_one_shot_ask_names_what_failed_beside_the_answer(tmp_path: Path, llm_url: str) -> None:
    cfg = _one_node_config(tmp_path, llm_url, ["fixed:B", "fail"], "fixed:B")
    run = subprocess.run(
        [*HIERAMAS, "ask", "--config", str(cfg), "Which option?"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "The answer is B" in run.stdout  # embedded stack: nats-server, controller, worker
    assert "failed: a: p1:" in run.stderr and "500" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_question_over_the_payload_limit_is_a_clear_error() -> None:
    from hieramas.natsserver import NatsServer

    with NatsServer(max_payload=4096) as server:
        run = subprocess.run(
            [*HIERAMAS, "ask", "--nats", server.url, "x" * 10_000],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 1
    assert "oversize" in run.stderr and "4096-byte maximum" in run.stderr
    assert "Traceback" not in run.stderr


def test_up_on_a_password_protected_nats_prints_the_url_masked(tmp_path: Path) -> None:
    from hieramas.natsserver import NatsServer

    cfg = _one_node_config(tmp_path, "http://127.0.0.1:1/v1", ["echo"], "echo")
    with NatsServer(extra_args=["--user", "hm", "--pass", "s3cret-pw"]) as server:
        url = server.url.replace("nats://", "nats://hm:s3cret-pw@")
        up = subprocess.Popen(
            [*HIERAMAS, "up", "--nats", url, "--config", str(cfg), "--no-emulator"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert up.stdout is not None
            first = up.stdout.readline()
            assert first.split() == ["NATS", url.replace("s3cret-pw", "***")]
            up.send_signal(signal.SIGTERM)
            _, stderr = up.communicate(timeout=30)
        finally:
            if up.poll() is None:
                up.kill()
    assert up.returncode == 0
    assert "s3cret-pw" not in first + stderr


def test_config_history_marks_an_unreadable_version(nats_server: NatsServer) -> None:
    import asyncio

    import nats
    from typer.testing import CliRunner

    from hieramas.bus import Bus
    from hieramas.cli import app
    from hieramas.controller.store import CONFIG_BUCKET, ConfigStore
    from hieramas.natsconn import NatsSettings
    from hieramas.stack import Stack

    bus = Bus(NatsSettings(url=nats_server.url)).start()
    try:
        store = bus.call(ConfigStore(bus).open(), 10)
        for name in ("one", "two"):
            text = config_yaml("http://127.0.0.1:9/v1", {"a": node("Critic", ["echo"], "echo")})
            bus.call(store.apply(text.replace("name: test", f"name: {name}")), 10)
    finally:
        bus.stop()

    async def corrupt() -> None:
        nc = await nats.connect(nats_server.url)
        kv = await nc.jetstream().key_value(CONFIG_BUCKET)
        await kv.put("v.1", b"\xc1 not msgpack")
        await nc.close()

    asyncio.run(corrupt())
    with Stack(nats_url=nats_server.url, workers=0):  # a controller that has not read v.1
        run = CliRunner().invoke(app, ["config", "history", "--nats", nats_server.url])
    assert run.exit_code == 0, run.output
    lines = run.output.splitlines()
    first = next(line for line in lines if line.strip().startswith("│ 1"))
    assert "unreadable" in first and "1970" not in run.output
    assert any("two" in line and "*" in line for line in lines)  # the rest as before


def test_ctrl_c_in_a_terminal_shuts_up_down_in_order(tmp_path: Path, llm_url: str) -> None:
    """A terminal's Ctrl-C signals the whole foreground group; the children must not die first."""
    cfg = _one_node_config(tmp_path, llm_url, ["fixed:B"], "fixed:B")
    up = subprocess.Popen(
        [*HIERAMAS, "up", "--config", str(cfg), "--no-emulator"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own, as a shell gives a foreground job
    )
    try:
        assert up.stdout is not None
        assert up.stdout.readline().startswith("NATS ")
        assert up.stdout.readline().startswith("config version 1")
        children = _children(up.pid)
        assert children
        os.killpg(up.pid, signal.SIGINT)
        rest, stderr = up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, stderr
    said = rest + stderr
    assert "disconnected" not in said and "EOF" not in said, said  # an orderly stop
    _assert_gone(children)


def test_a_one_shot_ask_killed_mid_query_leaves_no_servers_behind(
    tmp_path: Path, llm_url: str
) -> None:
    cfg = _one_node_config(tmp_path, llm_url, ["slow:5"], "fixed:B")
    ask = subprocess.Popen(
        [*HIERAMAS, "ask", "--config", str(cfg), "Which option?"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (children := _children(ask.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)  # the embedded nats-server is up
        assert children
        time.sleep(1.0)  # into the query
        children = _children(ask.pid)
        ask.send_signal(signal.SIGTERM)
        ask.communicate(timeout=30)
    finally:
        if ask.poll() is None:
            ask.kill()
    assert ask.returncode != 0
    _assert_gone(children)
