"""Typed errors of the local-model layer."""

from __future__ import annotations

__all__ = [
    "AssemblyError",
    "ChecksumMismatchError",
    "LlamaCppMissingError",
    "LocalModelError",
    "LocalServerError",
    "UnknownModelError",
]


class LocalModelError(Exception):
    """Base class of every error raised by :mod:`hieramas.llm.local`."""


class UnknownModelError(LocalModelError, KeyError):
    """A model key or alias that is not in the local pool."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown local model"


class AssemblyError(LocalModelError):
    """A model file could not be fetched or assembled (pip failed, member missing, ...)."""


class ChecksumMismatchError(AssemblyError):
    """The assembled file's size or sha256 differs from the pinned value; the file was deleted."""

    def __init__(self, alias: str, expected: str, actual: str) -> None:
        super().__init__(
            f"model {alias!r}: assembled file does not match its pinned checksum "
            f"(expected {expected}, got {actual}); the file was deleted"
        )
        self.alias = alias
        self.expected = expected
        self.actual = actual


class LlamaCppMissingError(LocalModelError):
    """``llama-cpp-python[server]`` is not installed."""


class LocalServerError(LocalModelError):
    """The llama.cpp server failed to start, died, or did not become ready in time."""
