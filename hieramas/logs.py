"""structlog set-up: one processor pipeline, with secret redaction, for our logs and every
third-party logger (nats, pykka, httpx, uvicorn, asyncio), rendered as JSON lines or text.

The format is JSON when stderr is not a terminal (a file, a pipe, a container log) and
readable text on one; ``configure_logging(json=...)``, ``--log-json/--log-console`` or
``$HIERAMAS_LOG_FORMAT`` (``json`` or ``console``) choose it instead.

``query_id``, ``trace_id`` and ``node`` are bound in a context variable where the handling of
a query's message begins (an actor's message handler, :func:`bind_log_context` in the
gateway's query task; :class:`log_context` for a block), so every line logged meanwhile
carries them without being passed at each call; tasks started there inherit them.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from hieramas.natsconn import redact_url

__all__ = [
    "FORMAT_ENV",
    "QUERY_CONTEXT",
    "add_log_context",
    "bind_log_context",
    "configure_logging",
    "json_wanted",
    "log_context",
    "redact_secrets",
]

FORMAT_ENV = "HIERAMAS_LOG_FORMAT"

_SECRET_KEY = re.compile(r"(api[_-]?key|password|passwd|secret|token|authorization|seed)", re.I)
_URL_WITH_CREDENTIALS = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@[^\s,]+", re.I)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._\-]+", re.I)
# keys a stdlib record's rendering adds that are no secret, though they match _SECRET_KEY
_NOT_SECRET = frozenset({"event", "logger", "level", "timestamp", "exception"})


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        value = _URL_WITH_CREDENTIALS.sub(lambda m: redact_url(m.group(0)), value)
        return _BEARER.sub(r"\1***", value)
    return value


def redact_secrets(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask values of secret-looking keys and credentials embedded in URLs or headers."""
    for key, value in list(event_dict.items()):
        if key.startswith("_"):  # the stdlib record and its formatter, not rendered
            continue
        if (
            key not in _NOT_SECRET
            and _SECRET_KEY.search(key)
            and not key.endswith("_env")
            and value
        ):
            event_dict[key] = "***"
        else:
            event_dict[key] = _scrub(value)
    return event_dict


Bound = tuple[str | None, str | None, str | None]
"""``(query_id, trace_id, node)``, ``None`` where unbound."""

QUERY_CONTEXT: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar(
    "hieramas_log_context", default=(None, None, None)
)
"""What the current message is about: a :data:`Bound` tuple, or ``(actor, message)``, which
an actor's handler sets for each message and which is resolved only when a line is logged
(the actor's ``log_ids(message)`` and ``node``).  It is set for every message a process
handles, so it is one variable set and reset directly: no per-key variables as structlog's
``bind_contextvars`` (callgrind: +5% of a lone query's instructions), no ids worked out per
message (+4%)."""

_KEEP: Any = object()  # a field not given: keep what is bound


def _resolve(value: tuple[Any, ...]) -> Bound:
    if len(value) == 2:  # (actor, message): worked out now that a line is logged
        actor, message = value
        query_id, trace_id = actor.log_ids(message)
        return query_id, trace_id, getattr(actor, "node", None)
    return value


def _merged(query_id: str | None, trace_id: str | None, node: str | None) -> Bound:
    q, t, n = _resolve(QUERY_CONTEXT.get())
    return (
        q if query_id is _KEEP else query_id or None,
        t if trace_id is _KEEP else trace_id or None,
        n if node is _KEEP else node or None,
    )


class log_context:  # used like a function: ``with log_context(query_id=...)``
    """Bind ``query_id``, ``trace_id`` and ``node`` to the log context for the block, then
    restore what was bound before.  A field not given stays as bound; a ``None`` or empty
    one is unbound for the block, so that nothing of another query's context lingers."""

    __slots__ = ("_bound", "_token")

    def __init__(
        self,
        *,
        query_id: str | None = _KEEP,
        trace_id: str | None = _KEEP,
        node: str | None = _KEEP,
    ) -> None:
        self._bound = (query_id, trace_id, node)

    def __enter__(self) -> None:
        self._token = QUERY_CONTEXT.set(_merged(*self._bound))

    def __exit__(self, *exc: object) -> None:
        QUERY_CONTEXT.reset(self._token)


def bind_log_context(
    *, query_id: str | None = _KEEP, trace_id: str | None = _KEEP, node: str | None = _KEEP
) -> None:
    """Bind fields for the rest of the current asyncio task (a task runs in its own copy
    of the context, so they go when it ends); as :class:`log_context` otherwise."""
    QUERY_CONTEXT.set(_merged(query_id, trace_id, node))


def add_log_context(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add the fields bound by :class:`log_context` (a field given at the call wins)."""
    query_id, trace_id, node = _resolve(QUERY_CONTEXT.get())
    if query_id:
        event_dict.setdefault("query_id", query_id)
    if trace_id:
        event_dict.setdefault("trace_id", trace_id)
    if node:
        event_dict.setdefault("node", node)
    return event_dict


def json_wanted(json: bool | None = None, stream: TextIO | None = None) -> bool:
    """``json`` if given, else ``$HIERAMAS_LOG_FORMAT``, else JSON unless ``stream``
    (default stderr) is a terminal."""
    if json is not None:
        return json
    wanted = os.environ.get(FORMAT_ENV, "").strip().lower()
    if wanted in ("json", "console"):
        return wanted == "json"
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to whatever ``sys.stderr`` is at each record: tests and
    embedding apps swap it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ assigns it
        pass


_OURS = "_hieramas_handler"


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    """Route structlog and stdlib logging to stderr through one pipeline (context, level,
    time, redaction), at ``level`` (third-party loggers at warning or above unless
    ``level`` is debug), as JSON lines or text (see :func:`json_wanted`)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    as_json = json_wanted(json)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_log_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,  # before redaction: a traceback can hold a URL
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # resolve sys.stderr at each call: tests and embedding apps swap it
        logger_factory=lambda *args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
    # every stdlib logger (nats, pykka, httpx, uvicorn, asyncio...) through the same processors
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    setattr(handler, _OURS, True)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    # third-party libraries are chatty at info (httpx logs each request): warnings and up
    root.setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
