"""Embedders: the packaged MiniLM offline, the hash stand-in, and the LRU cache."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest
import torch

from hieramas.learner.embeddings import (
    CachedEmbedder,
    EmbedderError,
    HashEmbedder,
    SentenceEmbedder,
    default_model_path,
)


class _Counting:
    """Counts the texts it is asked to embed."""

    def __init__(self) -> None:
        self.inner = HashEmbedder(8)
        self.calls: list[list[str]] = []

    @property
    def name(self) -> str:
        return "counting"

    @property
    def dim(self) -> int:
        return 8

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        return self.inner.embed(texts)


def test_hash_embedder_is_deterministic_normalised_and_separates_texts() -> None:
    e = HashEmbedder(64)
    a = e.embed(["alpha", "beta", "alpha"])
    assert a.shape == (3, 64) and a.dtype == torch.float32
    assert torch.allclose(a.norm(dim=1), torch.ones(3))
    assert torch.equal(a[0], a[2]) and torch.equal(a[0], HashEmbedder(64).embed(["alpha"])[0])
    assert abs(float(a[0] @ a[1])) < 0.5


def test_cache_embeds_each_missing_text_once_in_one_batch_and_keeps_order() -> None:
    inner = _Counting()
    cache = CachedEmbedder(inner, maxsize=3)
    first = cache.embed(["a", "b", "a"])
    assert inner.calls == [["a", "b"]]
    second = cache.embed(["b", "c", "a"])
    assert inner.calls == [["a", "b"], ["c"]]
    assert torch.equal(second[0], first[1]) and torch.equal(second[2], first[0])
    assert (cache.hits, cache.misses) == (3, 3)
    cache.embed(["d"])  # evicts the least recently used: b
    assert len(cache) == 3
    cache.embed(["b"])
    assert inner.calls[-1] == ["b"]
    assert cache.embed([]).shape == (0, 8)


def test_the_packaged_minilm_loads_offline_and_embeds_by_meaning() -> None:
    assert (default_model_path() / "model.safetensors").is_file()
    embedder = SentenceEmbedder()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    vectors = embedder.embed(
        [
            "What is the derivative of x squared?",
            "Differentiate x^2 with respect to x.",
            "Who wrote the Declaration of Independence?",
        ]
    )
    assert vectors.shape == (3, 384) and embedder.dim == 384
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-5)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.3
    assert not vectors.is_inference()  # usable in a training graph
    with pytest.raises(EmbedderError):
        SentenceEmbedder("/nonexistent/model-dir")
