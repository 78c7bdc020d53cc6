"""Shared fixtures: the benchmark data dir, an in-process engine and a live emulator server."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from hieramas.emulator.api import ChatCompletionRequest
from hieramas.emulator.codebugs import CACHE_ENV
from hieramas.emulator.engine import Engine
from hieramas.emulator.runner import running_emulator
from hieramas.tasks.datasets import data_dir

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session", autouse=True)
def _private_code_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the code-bug cache of the test session out of the user's cache dir."""
    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("emu-cache") / "code_bugs.json")
    yield
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    root = data_dir()
    if not (root / "mmlu_redux" / "mmlu_redux.jsonl").is_file():
        pytest.skip(f"benchmark data not found under {root}")
    return root


@pytest.fixture(scope="session")
def engine(datasets_dir: Path) -> Engine:
    return Engine.create(seed=0, latency_scale=0.0, data_dir=datasets_dir)


@pytest.fixture(scope="session")
def emulator_url(datasets_dir: Path) -> Iterator[str]:
    with running_emulator(seed=0, latency_scale=0.0, data_dir=datasets_dir) as url:
        yield url


def make_request(
    model: str, messages: Sequence[dict[str, str]], **extra: Any
) -> ChatCompletionRequest:
    """A chat-completions request record, as the server would parse it."""
    return ChatCompletionRequest.model_validate({"model": model, "messages": messages, **extra})


Ask = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session")
def ask(engine: Engine) -> Ask:
    """``await ask(model, messages, **extra)``: the text of one in-process completion
    (the server's code path minus HTTP framing)."""

    async def _ask(model: str, messages: Sequence[dict[str, str]], **extra: Any) -> str:
        completion = await engine.complete(make_request(model, messages, **extra))
        return completion.choices[0].text

    return _ask
