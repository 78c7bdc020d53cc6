"""One embedder per name, per process: what a checkpoint's ``embedder`` field names.

A checkpoint records the name of the embedder it was trained with
(:attr:`TextEmbedder.name`); whoever plans with it (the controller) or trains it
(the learner) must embed with the same one.  :func:`embedder_for` turns a name
back into a cached embedder: ``hash-<dim>`` is a :class:`HashEmbedder` (tests,
smoke runs), ``<model>[+int8]`` a :class:`SentenceEmbedder` (loaded once per
process: several seconds for MiniLM).
"""

from __future__ import annotations

import threading

from hieramas.learner.embeddings import CachedEmbedder, HashEmbedder, SentenceEmbedder

__all__ = ["embedder_for"]

_made: dict[str, CachedEmbedder] = {}
_lock = threading.Lock()


def embedder_for(name: str, *, cache_size: int = 8192) -> CachedEmbedder:
    """The process's cached embedder named ``name`` (built on first use; thread-safe).

    :class:`~hieramas.learner.embeddings.EmbedderError` if a model cannot be loaded.
    """
    with _lock:  # a model loads once even when two threads ask at once
        made = _made.get(name)
        if made is None:
            made = _made[name] = CachedEmbedder(_build(name), maxsize=cache_size)
        return made


def _build(name: str) -> HashEmbedder | SentenceEmbedder:
    if name.startswith("hash-") and name[5:].isdigit():
        return HashEmbedder(int(name[5:]))
    if name.endswith("+int8"):
        return SentenceEmbedder(name[: -len("+int8")], int8=True)
    return SentenceEmbedder(name)
