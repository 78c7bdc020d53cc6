"""``$HIERAMAS_JS_REPLICAS``: how many servers keep each stream and bucket a process creates."""

from __future__ import annotations

import pytest

from hieramas.natsconn import jetstream_replicas


def test_one_replica_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIERAMAS_JS_REPLICAS", raising=False)
    assert jetstream_replicas() == 1
    monkeypatch.setenv("HIERAMAS_JS_REPLICAS", " 3 ")
    assert jetstream_replicas() == 3


@pytest.mark.parametrize("bad", ["0", "6", "three", "-1", "2.5"])
def test_a_bad_count_is_refused_clearly(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("HIERAMAS_JS_REPLICAS", bad)
    with pytest.raises(ValueError, match="HIERAMAS_JS_REPLICAS"):
        jetstream_replicas()
