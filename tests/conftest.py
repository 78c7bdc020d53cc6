"""Shared fixtures: a real nats-server per test, a scripted OpenAI-compatible server on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hieramas.llm.loopback import LoopbackLLM
from hieramas.natsserver import NatsServer
from hieramas.stack import Stack

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HIERAMAS_DATA_DIR", str(REPO.parent / "shared" / "datasets"))


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream on a free loopback port."""
    with NatsServer() as server:
        yield server


@pytest.fixture
def stack(nats_server: NatsServer) -> Iterator[Stack]:
    """Controller, gateway and one worker in this process, on ``nats_server``."""
    with Stack(nats_url=nats_server.url) as running:
        yield running


@pytest.fixture(scope="session")
def llm_url() -> Iterator[str]:
    """Base URL of the scripted LLM server (instant replies)."""
    with LoopbackLLM(record=False) as server:
        yield server.base_url
