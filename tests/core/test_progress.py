"""The shared progress display: plain lines off a terminal, a live bar on one."""

from __future__ import annotations

import io
import threading

import pytest
from rich.console import Console

from hieramas.progress import ProgressDisplay, progress_mode


def _plain(buf: io.StringIO) -> Console:
    return Console(file=buf, force_terminal=False, width=200)


def test_not_a_terminal_prints_plain_lines_every_ten_percent_and_at_the_end() -> None:
    buf = io.StringIO()
    with ProgressDisplay(_plain(buf), every_s=1e9) as progress:
        for n in range(101):
            progress.update("data", n, 100)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "data: started, 100 to do"
    assert [line.split()[1] for line in lines[1:]] == [f"{n}/100" for n in range(10, 101, 10)]
    assert "ETA" in lines[1] and "/s" in lines[1]
    assert lines[-1].endswith("done")
    # no line after the phase is done, however often it is updated
    progress.update("data", 100, 100)
    assert len(buf.getvalue().splitlines()) == len(lines)


def test_a_resumed_phase_says_where_it_resumed_and_its_info_shows() -> None:
    buf = io.StringIO()
    with ProgressDisplay(_plain(buf), every_pct=50, every_s=1e9) as progress:
        progress("eval", 40, 100)
        progress.update("eval", 100, 100, info="acc 0.812")
    text = buf.getvalue()
    assert "eval: started, 100 to do (resumed at 40/100)" in text
    assert "eval: 100/100 (100%)" in text and "acc 0.812" in text


def test_advance_from_many_threads_counts_every_item() -> None:
    buf = io.StringIO()
    with ProgressDisplay(_plain(buf), every_s=1e9) as progress:
        threads = [
            threading.Thread(target=lambda: [progress.advance("q", total=400) for _ in range(100)])
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert "q: 400/400 (100%)" in buf.getvalue()


def test_a_terminal_gets_the_live_bar_with_rate_and_eta() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200)
    with ProgressDisplay(console) as progress:
        assert progress.mode == "live"
        progress.update("train", 5, 10, info="reward +0.10")
    text = buf.getvalue()
    assert "train" in text and "5/10" in text and "reward +0.10" in text and "ETA" in text


@pytest.mark.parametrize("value", ["plain", "live", "off"])
def test_the_environment_overrides_the_choice(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIERAMAS_PROGRESS", value)
    assert progress_mode(_plain(io.StringIO())) == value


def test_off_prints_nothing() -> None:
    buf = io.StringIO()
    with ProgressDisplay(_plain(buf), mode="off") as progress:
        progress.update("x", 1, 1)
        progress.note("hello")
    assert buf.getvalue() == ""
