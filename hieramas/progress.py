"""One progress display for long commands (``bench``, ``train``, ``compare``, ``demo``).

On a terminal it is a live rich display (bar, n/total, rate, elapsed, ETA); when stderr is
not a terminal (a log file, CI, a pipe) it prints plain lines instead: one when a phase
starts, then whenever another ``every_pct`` percent is done or ``every_s`` seconds have
passed, and one when it finishes.  ``HIERAMAS_PROGRESS=plain|live|off`` overrides the choice.

Use::

    with ProgressDisplay() as progress:
        progress.update("data", n, total)          # the (phase, n, total) callback shape
        progress.advance("eval", total=len(items))   # one more done
        progress.update("train", n, total, info="reward +0.31")  # a live figure after the bar
        progress.note("resumed 12 items")           # a line above the display

``update`` and ``advance`` may be called from any thread (the bus loop's callbacks call them).
A phase's first ``update`` says where it starts: 0, or what an earlier run already did.  Rates
and ETAs count only what is done in this process, so a phase resumed at 40/100 starts its rate
at 40.  ``advance`` on a new phase starts it at 0.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["Mode", "ProgressDisplay", "progress_mode"]

Mode = Literal["live", "plain", "off"]


def progress_mode(console: Console) -> Mode:
    """``$HIERAMAS_PROGRESS`` if set (live, plain, off), else live on a terminal, plain otherwise."""
    wanted = os.environ.get("HIERAMAS_PROGRESS", "").strip().lower()
    if wanted in ("live", "plain", "off"):
        return wanted  # type: ignore[return-value]
    return "live" if console.is_terminal else "plain"


class _RateColumn(ProgressColumn):
    """Items per second, from rich's own speed estimate."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(
            "–/s" if speed is None else f"{speed:.2f}/s" if speed < 10 else f"{speed:.0f}/s"
        )


@dataclass
class _Phase:
    total: int | None
    completed: int = 0
    first: int = 0
    started: float = field(default_factory=time.monotonic)
    printed_at: float = field(default_factory=time.monotonic)
    printed_pct: float = 0.0
    info: str = ""
    done: bool = False
    task: TaskID | None = None


def _duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class ProgressDisplay:
    """Progress of one or more named phases (see the module docstring)."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        mode: Mode | None = None,
        every_pct: float = 10.0,
        every_s: float = 30.0,
        transient: bool = False,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.mode: Mode = mode or progress_mode(self.console)
        self.every_pct = every_pct
        self.every_s = every_s
        self._phases: dict[str, _Phase] = {}
        self._lock = threading.Lock()
        self._live: Progress | None = None
        if self.mode == "live":
            self._live = Progress(
                TextColumn("[bold]{task.description}[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                _RateColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=self.console,
                transient=transient,
            )

    def __enter__(self) -> ProgressDisplay:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()

    def __call__(self, phase: str, completed: int, total: int | None) -> None:
        """The ``(phase, n, total)`` callback shape the learner's runs take."""
        self.update(phase, completed, total)

    def update(
        self, phase: str, completed: int, total: int | None = None, *, info: str | None = None
    ) -> None:
        """Set ``phase`` to ``completed`` of ``total`` (a new phase starts at its first call)."""
        with self._lock:
            self._set(phase, completed, total, info)

    def advance(
        self, phase: str, by: int = 1, *, total: int | None = None, info: str | None = None
    ) -> None:
        """One (or ``by``) more of ``phase`` done."""
        with self._lock:
            if phase not in self._phases:
                self._set(phase, 0, total, None)
            self._set(phase, self._phases[phase].completed + by, total, info)

    def _set(self, phase: str, completed: int, total: int | None, info: str | None) -> None:
        state = self._phases.get(phase)
        if state is None:
            state = self._phases[phase] = _Phase(total=total, completed=completed)
            state.first = completed
            if self._live is not None:
                state.task = self._live.add_task(
                    phase, total=total, completed=completed, info=info or ""
                )
            self._print_start(phase, state)
        if total is not None:
            state.total = total
        state.completed = completed
        if info is not None:
            state.info = info
        if self._live is not None and state.task is not None:
            self._live.update(state.task, completed=completed, total=state.total, info=state.info)
        elif self.mode == "plain":
            self._maybe_print(phase, state)

    def note(self, text: str) -> None:
        """Print a line above the live display (or just a line)."""
        if self.mode != "off":
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def _print_start(self, phase: str, state: _Phase) -> None:
        if self.mode != "plain":
            return
        of = f"/{state.total}" if state.total is not None else ""
        resumed = f" (resumed at {state.completed}{of})" if state.completed else ""
        self.note(
            f"{phase}: started, {state.total if state.total is not None else '?'} to do{resumed}"
        )

    def _maybe_print(self, phase: str, state: _Phase) -> None:
        now = time.monotonic()
        total = state.total
        pct = 100.0 * state.completed / total if total else 0.0
        finished = total is not None and state.completed >= total
        if state.done:
            return
        due = (
            finished
            or pct - state.printed_pct >= self.every_pct
            or now - state.printed_at >= self.every_s
        )
        if not due:
            return
        state.printed_at, state.printed_pct, state.done = now, pct, finished
        elapsed = now - state.started
        made = state.completed - state.first
        rate = made / elapsed if elapsed > 0 and made > 0 else None
        parts = [f"{phase}: {state.completed}/{total if total is not None else '?'}"]
        if total:
            parts.append(f"({pct:.0f}%)")
        parts.append(f"{rate:.2f}/s" if rate is not None else "–/s")
        parts.append(f"elapsed {_duration(elapsed)}")
        if finished:
            parts.append("done")
        elif rate and total is not None:
            parts.append(f"ETA {_duration((total - state.completed) / rate)}")
        if state.info:
            parts.append(state.info)
        self.note(" ".join(parts))
