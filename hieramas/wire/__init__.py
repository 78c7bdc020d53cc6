"""Wire format: the msgpack envelope, message kinds and subject names.

Everything that crosses NATS goes through :func:`encode` / :func:`decode`;
nothing else in the code base touches bytes.
"""

from __future__ import annotations

from hieramas.wire.envelope import (
    SCHEMA_VERSION,
    Envelope,
    WireError,
    decode,
    encode,
    new_id,
)
from hieramas.wire.kinds import Kind, input_output
from hieramas.wire.subjects import Subjects

__all__ = [
    "SCHEMA_VERSION",
    "Envelope",
    "Kind",
    "Subjects",
    "WireError",
    "decode",
    "encode",
    "input_output",
    "new_id",
]
