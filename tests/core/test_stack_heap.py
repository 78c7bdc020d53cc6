"""What a started stack does to the process's garbage collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from hieramas.natsserver import NatsServer
from hieramas.stack import YOUNG_GC_THRESHOLD, Stack


@pytest.fixture
def threshold() -> Iterator[None]:
    """Restore the process's thresholds after the test (the stack changes them)."""
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("threshold")
def test_a_stack_collects_its_young_objects_less_often(nats_server: NatsServer) -> None:
    gc.set_threshold(700, 10, 10)
    with Stack(nats_url=nats_server.url, workers=0, controller=False):
        assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)  # given back at stop


@pytest.mark.usefixtures("threshold")
def test_a_higher_threshold_of_the_user_is_kept(nats_server: NatsServer) -> None:
    gc.set_threshold(YOUNG_GC_THRESHOLD * 2, 5, 7)
    with Stack(nats_url=nats_server.url, workers=0, controller=False):
        assert gc.get_threshold() == (YOUNG_GC_THRESHOLD * 2, 5, 7)
