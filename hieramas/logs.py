"""structlog set-up: a small processor pipeline that redacts secrets before rendering."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from hieramas.natsconn import redact_url

__all__ = ["configure_logging", "redact_secrets"]

_SECRET_KEY = re.compile(r"(api[_-]?key|password|passwd|secret|token|authorization|seed)", re.I)
_URL_WITH_CREDENTIALS = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@[^\s,]+", re.I)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._\-]+", re.I)


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
        if _SECRET_KEY.search(key) and not key.endswith("_env") and value:
            event_dict[key] = "***"
        else:
            event_dict[key] = _scrub(value)
    return event_dict


def configure_logging(level: str = "info", *, json: bool = False) -> None:
    """Route structlog (and stdlib logging) to stderr at ``level``, as text or JSON lines."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    logging.basicConfig(
        level=max(numeric, logging.WARNING), stream=sys.stderr, format="%(message)s"
    )
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # resolve sys.stderr at each call: tests and embedding apps swap it
        logger_factory=lambda *args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
