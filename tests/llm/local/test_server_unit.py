"""LocalServer lifecycle against a stand-in server process (real subprocess, real HTTP)."""

from __future__ import annotations

import dataclasses
import signal
import stat
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from hieramas.llm.local import (
    LOCAL_MODELS,
    LlamaCppMissingError,
    LocalModel,
    LocalModelError,
    LocalServer,
    LocalServerError,
    assemble_model,
    running_local_server,
    server_config,
)
from hieramas.llm.local import server as server_module

FAKE = Path(__file__).with_name("fake_llama_server.py")


def _launcher(tmp_path: Path, mode: str) -> str:
    script = tmp_path / f"fake-python-{mode}"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" {mode} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.fixture
def two_models(
    local_fake_model: Any, local_fetcher: Any, local_models_dir: Path
) -> list[LocalModel]:
    first = local_fake_model([b"gguf one"], prefix="fake-a-part")
    second = local_fake_model([b"gguf two"], prefix="fake-b-part")
    first = dataclasses.replace(first, key="a", alias="fake-a", filename="a.gguf")
    second = dataclasses.replace(
        second, key="b", alias="fake-b", filename="b.gguf", chat_format=None
    )
    for m in (first, second):
        assemble_model(m, local_models_dir, fetcher=local_fetcher)
    return [first, second]


def test_config_has_one_entry_per_alias_with_chat_format() -> None:
    qwen, smol = LOCAL_MODELS["0.5b"], LOCAL_MODELS["135m"]
    config = server_config(
        [(qwen, Path("/m/q.gguf")), (smol, Path("/m/s.gguf"))],
        host="127.0.0.1",
        port=1234,
        n_threads=2,
        n_ctx=2048,
    )
    assert (config["host"], config["port"], config["interrupt_requests"]) == (
        "127.0.0.1",
        1234,
        False,
    )
    q, s = config["models"]
    assert (q["model_alias"], q["model"], q["n_threads"], q["n_ctx"]) == (
        "qwen2.5-coder-0.5b",
        "/m/q.gguf",
        2,
        2048,
    )
    assert "chat_format" not in q  # Qwen: the chat template from the GGUF metadata
    assert s["chat_format"] == "chatml"
    with pytest.raises(LocalModelError):
        server_config([], host="h", port=1)
    with pytest.raises(LocalModelError):
        server_config([(qwen, Path("/q"))], host="h", port=1, n_threads=0)


def test_server_starts_serves_aliases_and_stops(
    tmp_path: Path, two_models: list[LocalModel], local_models_dir: Path
) -> None:
    server = LocalServer(
        two_models,
        model_directory=local_models_dir,
        python=_launcher(tmp_path, "ok"),
        n_threads=3,
        n_ctx=1024,
        startup_timeout_s=30,
    )
    with server:
        proc = server.process
        assert proc is not None and proc.poll() is None
        models = httpx.get(f"{server.base_url}/models").json()
        assert [m["id"] for m in models["data"]] == ["fake-a", "fake-b"]
        config = httpx.get(server.base_url.removesuffix("/v1") + "/config").json()
        assert [m["model"] for m in config["models"]] == [
            str(local_models_dir / "a.gguf"),
            str(local_models_dir / "b.gguf"),
        ]
        assert {m["n_threads"] for m in config["models"]} == {3}
        assert config["port"] == server.port
    assert proc.poll() is not None  # stopped
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.base_url}/models", timeout=2)


def test_crash_at_startup_reports_exit_code_and_output(
    tmp_path: Path, two_models: list[LocalModel], local_models_dir: Path
) -> None:
    server = LocalServer(
        two_models, model_directory=local_models_dir, python=_launcher(tmp_path, "crash")
    )
    with pytest.raises(LocalServerError, match=r"(?s)exited with code 3.*cannot load model"):
        server.start()
    assert server.process is None


def test_other_server_on_the_port_is_detected(
    tmp_path: Path, two_models: list[LocalModel], local_models_dir: Path
) -> None:
    server = LocalServer(
        two_models, model_directory=local_models_dir, python=_launcher(tmp_path, "wrong")
    )
    with pytest.raises(LocalServerError, match="someone-else"):
        server.start()


def test_startup_timeout_kills_the_process(
    tmp_path: Path, two_models: list[LocalModel], local_models_dir: Path
) -> None:
    server = LocalServer(
        two_models,
        model_directory=local_models_dir,
        python=_launcher(tmp_path, "mute"),
        startup_timeout_s=0.5,
    )
    with pytest.raises(LocalServerError, match="not ready after"):
        server.start()
    assert server.process is None


def test_signal_is_forwarded(
    tmp_path: Path, two_models: list[LocalModel], local_models_dir: Path
) -> None:
    server = LocalServer(
        two_models, model_directory=local_models_dir, python=_launcher(tmp_path, "ok")
    )
    server.start()
    try:
        server.send_signal(signal.SIGTERM)
        assert server.wait() == -signal.SIGTERM
    finally:
        server.stop()


def test_unassembled_model_is_a_clear_error(tmp_path: Path) -> None:
    server = LocalServer(["135m"], model_directory=tmp_path, python=_launcher(tmp_path, "ok"))
    with pytest.raises(LocalModelError, match=r"not assembled: 135m.*hieramas local fetch"):
        server.start()


def test_missing_llama_cpp_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, two_models: list[LocalModel], local_models_dir: Path
) -> None:
    monkeypatch.setattr(server_module, "llama_cpp_available", lambda: False)
    with (
        pytest.raises(LlamaCppMissingError, match=r"install_local\.sh"),
        running_local_server(two_models, model_directory=local_models_dir),
    ):
        pass


def test_base_url_is_loopback_on_a_chosen_port(two_models: list[LocalModel]) -> None:
    server = LocalServer(two_models, port=0)
    assert server.port > 0
    assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
    assert LocalServer(two_models, host="::1", port=9).base_url == "http://[::1]:9/v1"
    assert server.aliases == ["fake-a", "fake-b"]
