"""On-disk response cache for record/replay of LLM calls.

One SQLite file in WAL mode: many threads and processes may read and write it
at once (each thread has its own connection; writers take SQLite's lock, the
first recording of a key wins).  Keys hash (endpoint base URL, model id,
messages, sampling parameters); values are the full recorded
:class:`ChatResult`, replayed bit-for-bit with ``cached=True``.

Modes: ``off`` (never consulted), ``read-write`` (hits are served, misses are
called and recorded), ``replay-only`` (misses raise
:class:`~hieramas.llm.errors.ReplayMissError`; nothing is called).

Note: identical requests share one recording, so sampling at temperature > 0
with the same ``seed`` (or none) replays the first sample.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Literal

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from hieramas.llm.types import ChatRequest, ChatResult, EndpointSpec

__all__ = ["CacheMode", "ResponseCache", "cache_key"]

CacheMode = Literal["off", "read-write", "replay-only"]
_MODES: tuple[CacheMode, ...] = ("off", "read-write", "replay-only")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    created REAL NOT NULL,
    base_url TEXT NOT NULL,
    model_id TEXT NOT NULL,
    result TEXT NOT NULL
)
"""


def cache_key(request: ChatRequest, endpoint: EndpointSpec) -> str:
    """Stable hex key of a request at an endpoint (independent of key order and the API key)."""
    material = {
        "base_url": endpoint.base_url.rstrip("/"),
        "model": request.model.model_id,
        "messages": request.messages,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "seed": request.seed,
    }
    blob = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _encode(result: ChatResult) -> str:
    record: dict[str, Any] = {
        "text": result.text,
        "model": result.model,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "cost_usd": result.cost_usd,
        "latency_s": result.latency_s,
        "ttft_s": result.ttft_s,
        "usage_estimated": result.usage_estimated,
        "extra": result.extra,
    }
    return json.dumps(record, ensure_ascii=False)


def _decode(blob: str) -> ChatResult:
    record = json.loads(blob)
    return ChatResult(
        text=record["text"],
        model=record["model"],
        prompt_tokens=record["prompt_tokens"],
        completion_tokens=record["completion_tokens"],
        cost_usd=record["cost_usd"],
        latency_s=record["latency_s"],
        ttft_s=record["ttft_s"],
        usage_estimated=record["usage_estimated"],
        cached=True,
        extra=record["extra"],
    )


def _locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL (persistent: the first connection does it for all).

    Changing the journal mode needs an exclusive lock, and SQLite may report "database is
    locked" at once, without its busy handler, while other processes open the same new
    file; so the switch is retried for as long as the busy timeout would have waited.
    """
    for attempt in Retrying(
        retry=retry_if_exception(_locked),
        wait=wait_random_exponential(multiplier=0.01, max=0.5),
        stop=stop_after_delay(30.0),
        reraise=True,
    ):
        with attempt:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")


class ResponseCache:
    """SQLite-backed record/replay cache of chat results; safe across threads and processes."""

    def __init__(self, path: str | Path, mode: CacheMode = "read-write") -> None:
        if mode not in _MODES:
            raise ValueError(f"cache mode must be one of {_MODES}, got {mode!r}")
        self.path = Path(path)
        self.mode: CacheMode = mode
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        if mode != "off":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn()  # create the schema now: fail early on a bad path

    def __repr__(self) -> str:
        return f"ResponseCache(path={str(self.path)!r}, mode={self.mode!r})"

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout=30000")
            _use_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def get(self, key: str) -> ChatResult | None:
        """The recorded result for ``key`` (flagged ``cached``), or ``None``."""
        row = self._conn().execute("SELECT result FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else _decode(row[0])

    def put(
        self, key: str, request: ChatRequest, endpoint: EndpointSpec, result: ChatResult
    ) -> None:
        """Record ``result`` for ``key`` unless a recording already exists (first one wins)."""
        self._conn().execute(
            "INSERT OR IGNORE INTO responses (key, created, base_url, model_id, result)"
            " VALUES (?, ?, ?, ?, ?)",
            (key, time.time(), endpoint.base_url, request.model.model_id, _encode(result)),
        )

    def __len__(self) -> int:
        row = self._conn().execute("SELECT COUNT(*) FROM responses").fetchone()
        return int(row[0])

    async def aget(self, key: str) -> ChatResult | None:
        """:meth:`get` off the event loop."""
        return await asyncio.to_thread(self.get, key)

    async def aput(
        self, key: str, request: ChatRequest, endpoint: EndpointSpec, result: ChatResult
    ) -> None:
        """:meth:`put` off the event loop."""
        await asyncio.to_thread(self.put, key, request, endpoint, result)

    def close(self) -> None:
        """Close every connection this cache opened (from any thread)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()
