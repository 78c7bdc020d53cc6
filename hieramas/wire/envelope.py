"""One msgpack envelope for every message on the bus.

Layout (a msgpack map with short keys)::

    {"v": 1, "k": kind, "q": query_id, "t": trace_id, "s": span_id,
     "c": config_version, "f": sender, "ts": unix_time, "p": payload}

:func:`decode` never raises anything but :class:`WireError`, so a garbled or
foreign message is always a clean, typed rejection.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from hieramas.wire.kinds import REQUIRED_KEYS, Kind

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "SCHEMA_VERSION",
    "Envelope",
    "WireError",
    "decode",
    "encode",
    "new_id",
]

SCHEMA_VERSION = 1
_KINDS: dict[object, Kind] = {kind.value: kind for kind in Kind}
DEFAULT_MAX_PAYLOAD = 1024 * 1024  # nats-server's default max_payload


class WireError(ValueError):
    """A message that cannot be accepted; ``code`` is a stable machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_ids = random.Random()  # private: a user's random.seed() must never make ids repeat
os.register_at_fork(after_in_child=_ids.seed)  # a forked worker draws its own ids


def new_id() -> str:
    """A random 16-hex-digit id for queries, traces and spans.

    Ids need uniqueness, not secrecy: a process-private PRNG seeded from the OS
    costs no system call per id (``os.urandom`` did, on every span).
    """
    return f"{_ids.getrandbits(64):016x}"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded message: routing metadata plus a kind-specific payload map."""

    kind: Kind
    payload: dict[str, Any]
    query_id: str = ""
    trace_id: str = ""
    span_id: str = ""
    config_version: int = 0
    sender: str = ""
    ts: float = field(default_factory=time.time)

    def reply(self, kind: Kind, payload: dict[str, Any], *, sender: str) -> Envelope:
        """An envelope answering this one, keeping its query/trace ids."""
        return Envelope(
            kind=kind,
            payload=payload,
            query_id=self.query_id,
            trace_id=self.trace_id,
            span_id=self.span_id,
            config_version=self.config_version,
            sender=sender,
        )


class _Wire(msgspec.Struct, kw_only=True):
    """The envelope as it travels (short keys, in this order); decoding checks the types."""

    v: int
    k: str
    q: str = ""
    t: str = ""
    s: str = ""
    c: int = 0
    f: str = ""
    ts: float = 0.0
    p: dict[str, Any]


_encoder = msgspec.msgpack.Encoder()
_wire_decoder = msgspec.msgpack.Decoder(_Wire)
_any_decoder = msgspec.msgpack.Decoder()


def encode(envelope: Envelope, *, max_bytes: int = DEFAULT_MAX_PAYLOAD) -> bytes:
    """Serialise ``envelope``; raise :class:`WireError` ("oversize") beyond ``max_bytes``.

    The bytes are plain msgpack, the same as ``msgpack.packb(..., use_bin_type=True)``
    writes (a test checks this), produced by ``msgspec``.
    """
    data = _encoder.encode(
        _Wire(
            v=SCHEMA_VERSION,
            k=envelope.kind.value,
            q=envelope.query_id,
            t=envelope.trace_id,
            s=envelope.span_id,
            c=envelope.config_version,
            f=envelope.sender,
            ts=envelope.ts,
            p=envelope.payload,
        )
    )
    if len(data) > max_bytes:
        raise WireError(
            "oversize",
            f"{envelope.kind.value} message is {len(data)} bytes, over the {max_bytes}-byte "
            "maximum payload of this NATS server",
        )
    return data


def decode(data: bytes) -> Envelope:
    """Parse and validate bytes from the bus into an :class:`Envelope`.

    One ``msgspec`` pass parses the msgpack, rejects trailing bytes and checks the
    header's types; anything that fails it is re-read to name what is wrong.
    """
    try:
        wire = _wire_decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
        raise _diagnose(data, exc) from exc
    kind = _KINDS.get(wire.k)
    if wire.v != SCHEMA_VERSION or kind is None:
        raise _diagnose(data, None)
    payload = wire.p
    for key in REQUIRED_KEYS[kind]:
        if key not in payload:
            missing = sorted(REQUIRED_KEYS[kind] - payload.keys())
            raise WireError("payload", f"{kind.value}: payload lacks {', '.join(missing)}")
    return Envelope(
        kind=kind,
        payload=payload,
        query_id=wire.q,
        trace_id=wire.t,
        span_id=wire.s,
        config_version=wire.c,
        sender=wire.f,
        ts=wire.ts,
    )


def _diagnose(data: bytes, failure: Exception | None) -> WireError:
    """The typed error for bytes the fast path refused, checking in the order a reader would."""
    try:
        raw = _any_decoder.decode(data)
    except msgspec.DecodeError as exc:
        return WireError("garbled", f"not a msgpack message: {exc}")
    if not isinstance(raw, dict):
        return WireError("garbled", f"expected a msgpack map, got {type(raw).__name__}")
    version = raw.get("v")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        return WireError(
            "version",
            f"unsupported schema version {version!r} (this build speaks {SCHEMA_VERSION})",
        )
    kind = _KINDS.get(raw.get("k"))
    if kind is None:
        return WireError("kind", f"unknown message kind {raw.get('k')!r}")
    payload = raw.get("p")
    if not isinstance(payload, dict) or not all(isinstance(key, str) for key in payload):
        return WireError("payload", f"{kind.value}: payload must be a map with string keys")
    return WireError("header", f"{kind.value}: bad header field: {failure}")
