"""Logs: one redacting pipeline for structlog and third-party loggers, JSON off a terminal,
and the query's context (query id, trace id, node) bound where its handling begins."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from hieramas.logs import (
    FORMAT_ENV,
    bind_log_context,
    configure_logging,
    json_wanted,
    log_context,
)
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack
from support import apply_config, ask, config_yaml, node


class _Stderr:
    """What was logged to stderr so far (pytest's capture; it swaps sys.stderr per phase)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys, self.text = capsys, ""

    def getvalue(self) -> str:
        self.text += self.capsys.readouterr().err
        return self.text

    def clear(self) -> None:
        self.getvalue()
        self.text = ""


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[_Stderr]:
    try:
        yield _Stderr(capsys)
    finally:
        structlog.reset_defaults()
        configure_logging("warning", json=False)


def _lines(buffer: _Stderr) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize("name", ["nats", "httpx", "pykka", "uvicorn.error", "asyncio"])
def test_a_third_party_logger_goes_through_the_redaction(name: str, stderr: _Stderr) -> None:
    configure_logging("info", json=True)
    logging.getLogger(name).warning(
        "connect to %s with Authorization: Bearer sk-live.abc_123", "nats://alice:s3cret@h:4222"
    )
    try:
        raise ConnectionError("nats://bob:hunter2@h:4222 refused")
    except ConnectionError:
        logging.getLogger(name).exception("failed")
    text = stderr.getvalue()
    assert "s3cret" not in text and "sk-live" not in text and "hunter2" not in text
    first, second = _lines(stderr)
    assert first["logger"] == name and first["level"] == "warning"
    assert first["event"] == "connect to nats://alice:***@h:4222 with Authorization: Bearer ***"
    assert "ConnectionError" in second["exception"] and "bob:***@h" in second["exception"]


def test_third_party_info_stays_quiet_unless_debugging(stderr: _Stderr) -> None:
    configure_logging("info", json=True)
    logging.getLogger("httpx").info("HTTP Request: POST http://h/v1 200")
    assert stderr.getvalue() == ""
    configure_logging("debug", json=True)
    logging.getLogger("httpx").info("HTTP Request: POST http://h/v1 200")
    assert _lines(stderr)[0]["event"] == "HTTP Request: POST http://h/v1 200"


def test_json_off_a_terminal_console_on_one_and_the_override(
    stderr: _Stderr, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv(FORMAT_ENV, raising=False)
    assert json_wanted(None, io.StringIO()) is True
    assert json_wanted(None, Tty()) is False
    assert json_wanted(True, Tty()) is True
    monkeypatch.setenv(FORMAT_ENV, "console")
    assert json_wanted(None, io.StringIO()) is False
    monkeypatch.setenv(FORMAT_ENV, "json")
    assert json_wanted(None, Tty()) is True
    monkeypatch.delenv(FORMAT_ENV)

    configure_logging("info")  # the test's stderr is no terminal: JSON
    structlog.get_logger().warning("as.json", n=1)
    assert _lines(stderr)[0] == {**_lines(stderr)[0], "event": "as.json", "n": 1}
    stderr.clear()
    configure_logging("info", json=False)
    structlog.get_logger().warning("as.text", n=1)
    logging.getLogger("nats").warning("from nats")
    text = stderr.getvalue()
    assert "[warning  ] as.text" in text and "n=1" in text and "from nats" in text
    assert not text.lstrip().startswith("{")


def test_log_context_binds_resets_and_unbinds(stderr: _Stderr) -> None:
    configure_logging("info", json=True)
    log = structlog.get_logger()
    with log_context(query_id="q1", trace_id="t1"):
        with log_context(node="expert"):
            log.warning("inner")
        with log_context(query_id="q2", trace_id=None):
            logging.getLogger("httpx").warning("other query")
        log.warning("outer")
    log.warning("after")
    inner, other, outer, after = _lines(stderr)
    assert (inner["query_id"], inner["trace_id"], inner["node"]) == ("q1", "t1", "expert")
    assert other["query_id"] == "q2" and "trace_id" not in other
    assert outer["query_id"] == "q1" and "node" not in outer
    assert not {"query_id", "trace_id", "node"} & after.keys()


def test_a_task_binds_its_query_for_its_own_logs_only(stderr: _Stderr) -> None:
    configure_logging("info", json=True)
    log = structlog.get_logger()

    async def query(query_id: str) -> None:
        bind_log_context(query_id=query_id, trace_id="t-" + query_id)
        await asyncio.sleep(0)  # the other task runs meanwhile
        log.warning("answered", query_id_given=query_id)

    async def both() -> None:
        await asyncio.gather(query("q1"), query("q2"))
        log.warning("after")

    asyncio.run(both())
    *answered, after = _lines(stderr)
    assert {(x["query_id"], x["trace_id"]) for x in answered} == {("q1", "t-q1"), ("q2", "t-q2")}
    assert all(x["query_id"] == x["query_id_given"] for x in answered)
    assert "query_id" not in after


@pytest.mark.parametrize("dispatch", ["loop", "threads"])
def test_a_worker_process_logs_carry_the_query_trace_and_node(
    dispatch: str, nats_server: NatsServer, llm_url: str, tmp_path: Path
) -> None:
    """A real query on a worker subprocess: its LLM retries (429, Retry-After 0) are logged
    by the worker with the query id, the trace id and the node bound, in JSON (stderr is a
    file), with no field passed by hand; actors drained by the loop or on their own threads."""
    log_file = tmp_path / "worker.log"
    env = {k: v for k, v in os.environ.items() if k != FORMAT_ENV}
    env["HIERAMAS_ACTOR_DISPATCH"] = dispatch
    with log_file.open("wb") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "hieramas", "--log-level", "warning", "worker",
             "--nats", nats_server.url],
            stdout=subprocess.PIPE, stderr=err, env=env,
        )  # fmt: skip
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().decode().startswith("worker ")
        with Stack(nats_url=nats_server.url, workers=0) as stack:
            text = config_yaml(
                llm_url, {"expert": node("Critic", ["fail429", "fixed:A"], "fixed:A")},
                extra_llms=["fail429"],
            ).replace("max_retries: 0", "max_retries: 1")  # fmt: skip
            apply_config(stack, text)
            result = ask(stack, "Which option?")
        assert result["status"] == "ok", result
        deadline = time.monotonic() + 30
        retries: list[dict[str, Any]] = []
        while not retries and time.monotonic() < deadline:
            lines = [json.loads(x) for x in log_file.read_text().splitlines() if x.startswith("{")]
            retries = [x for x in lines if x.get("event") == "llm_retry"]
            time.sleep(0.1)
        assert retries, log_file.read_text()
        assert retries[0]["query_id"] == result["query_id"]
        assert retries[0]["trace_id"] == result["trace_id"]
        assert retries[0]["node"] == "expert"
    finally:
        worker.terminate()
        worker.wait(30)


def test_the_in_process_emulator_leaves_uvicorn_logging_to_ours(stderr: _Stderr) -> None:
    """uvicorn's default log config gives its loggers their own handlers, which would bypass
    the redaction; the emulator's server runs without it."""
    from hieramas.emulator.runner import running_emulator

    configure_logging("info", json=True)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # as in a fresh process
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    with running_emulator():
        assert not logging.getLogger("uvicorn").handlers
        assert not logging.getLogger("uvicorn.error").handlers
        logging.getLogger("uvicorn.error").warning("bind nats://u:pw@h:1 failed")
    assert _lines(stderr)[-1]["event"] == "bind nats://u:***@h:1 failed"
