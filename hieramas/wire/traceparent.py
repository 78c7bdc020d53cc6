"""W3C ``traceparent``: the caller's trace context a query may carry.

A query's payload may hold ``"traceparent": "00-<trace id>-<span id>-<flags>"`` (W3C Trace
Context, level 1).  The query's trace id is then the caller's, and the workflow span that
``hieramas traces export`` makes for it has the caller's span as its parent, so a query's
spans join the caller's own trace.  A malformed value is refused (``bad_query``), never
guessed at: it comes from outside.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hieramas.wire.envelope import WireError

__all__ = ["CallerSpan", "parse_traceparent"]

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_MAX_LEN = 512  # version 00 is 55 characters; later versions may append fields


@dataclass(frozen=True, slots=True)
class CallerSpan:
    """The caller's span a query's spans hang under."""

    trace_id: str
    """32 lowercase hex digits."""
    span_id: str
    """16 lowercase hex digits."""
    sampled: bool

    def header(self) -> str:
        """The ``traceparent`` value (version 00) naming this span."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def parse_traceparent(value: object) -> CallerSpan:
    """The span a ``traceparent`` names; :class:`WireError` (``bad_traceparent``) if it is
    not a valid W3C value (wrong shape, version ``ff``, or an all-zero trace or span id)."""
    if not isinstance(value, str) or len(value) > _MAX_LEN:
        raise WireError("bad_traceparent", "'traceparent' must be a W3C traceparent string")
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        raise WireError(
            "bad_traceparent", "'traceparent' must look like 00-<32 hex>-<16 hex>-<2 hex>"
        )
    version, trace_id, span_id, flags = match.groups()
    rest = value.strip()[match.end() :]
    if version == "ff" or (version == "00" and rest) or (rest and not rest.startswith("-")):
        raise WireError("bad_traceparent", f"'traceparent' has an invalid version {version!r}")
    if int(trace_id, 16) == 0 or int(span_id, 16) == 0:
        raise WireError("bad_traceparent", "'traceparent' trace and span ids must not be zero")
    return CallerSpan(trace_id=trace_id, span_id=span_id, sampled=bool(int(flags, 16) & 1))
