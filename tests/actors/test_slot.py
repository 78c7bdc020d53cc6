"""Slot actors' own helpers (the call path itself runs end to end in test_runtime.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from hieramas.actors.slot import ProposerActor
from hieramas.llm.types import EndpointSpec, ModelSpec


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_slot_actors_reuse_a_spec_only_while_its_record_is_unchanged(
    loop: asyncio.AbstractEventLoop,
) -> None:
    ctx = SimpleNamespace(bus=SimpleNamespace(loop=loop))
    actor = ProposerActor(ctx, "n0", "0")  # type: ignore[arg-type]  # not started: _spec only
    record = {"name": "a", "model_id": "m", "endpoint": "e", "price_in_per_m": 1.0,
              "price_out_per_m": 2.0}  # fmt: skip
    first = actor._spec(ModelSpec, dict(record))
    assert actor._spec(ModelSpec, dict(record)) is first  # same record: the same object
    repriced = actor._spec(ModelSpec, {**record, "price_out_per_m": 3.0})
    assert repriced is not first and repriced.price_out_per_m == 3.0
    endpoint = actor._spec(EndpointSpec, {"name": "a", "base_url": "http://h/v1"})
    assert isinstance(endpoint, EndpointSpec)  # same name, other kind: no mix-up
    assert actor._spec(ModelSpec, {**record, "price_out_per_m": 3.0}) is repriced
