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


class Envelope(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    tag_field="v",
    tag=SCHEMA_VERSION,
    rename={
        "kind": "k",
        "query_id": "q",
        "trace_id": "t",
        "span_id": "s",
        "config_version": "c",
        "sender": "f",
        "payload": "p",
    },
):
    """A message: routing metadata plus a kind-specific payload map.

    It is also the wire layout: msgspec encodes it as the map in the module
    docstring (the schema version first, as the struct's tag) and decodes and
    type-checks it in one pass, so a message is never copied into a second object.
    """

    kind: Kind
    query_id: str = ""
    trace_id: str = ""
    span_id: str = ""
    config_version: int = 0
    sender: str = ""
    ts: float = msgspec.field(default_factory=time.time)
    payload: dict[str, Any]

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


class _NoVersion(msgspec.Struct, tag_field="v", tag=0):
    """Never valid.  msgspec checks a struct's tag only when it decodes a union of tagged
    structs, so decoding ``Envelope | _NoVersion`` is what makes ``"v"`` required."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope | _NoVersion)
_any_decoder = msgspec.msgpack.Decoder()


def encode(envelope: Envelope, *, max_bytes: int = DEFAULT_MAX_PAYLOAD) -> bytes:
    """Serialise ``envelope``; raise :class:`WireError` ("oversize") beyond ``max_bytes``.

    The bytes are plain msgpack, the same as ``msgpack.packb(..., use_bin_type=True)``
    writes (a test checks this), produced by ``msgspec``.
    """
    data = _encoder.encode(envelope)
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
        envelope = _decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
        raise _diagnose(data, exc) from exc
    if not isinstance(envelope, Envelope):
        raise _diagnose(data, None)
    payload = envelope.payload
    for key in REQUIRED_KEYS[envelope.kind]:
        if key not in payload:
            missing = sorted(REQUIRED_KEYS[envelope.kind] - payload.keys())
            raise WireError("payload", f"{envelope.kind.value}: payload lacks {', '.join(missing)}")
    return envelope


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
    tag = raw.get("k")
    kind = _KINDS.get(tag) if isinstance(tag, str) else None  # a list tag is unhashable
    if kind is None:
        return WireError("kind", f"unknown message kind {raw.get('k')!r}")
    payload = raw.get("p")
    if not isinstance(payload, dict) or not all(isinstance(key, str) for key in payload):
        return WireError("payload", f"{kind.value}: payload must be a map with string keys")
    return WireError("header", f"{kind.value}: bad header field: {failure}")
