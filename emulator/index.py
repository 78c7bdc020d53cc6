"""Recognise benchmark items inside prompt text.

At start-up every item's question is reduced to a fingerprint (its first
few normalised words); a prompt is matched by looking the fingerprint up at
the start of the task text and, failing that, at every word position of the
prompt.  Ties (shared openings) are broken by the longest common run of words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import structlog

from hieramas.tasks.datasets import DATASETS, DatasetNotFoundError, Item, load

__all__ = ["FINGERPRINT_WORDS", "ItemIndex", "load_items", "words"]

log = structlog.get_logger(__name__)

FINGERPRINT_WORDS = 16
"""How many leading words of a question make its fingerprint."""

_WORD = re.compile(r"[a-z0-9]+|[^a-z0-9\s]")
_HEAD_CHARS = 4000
_CACHE: dict[tuple[str, str, float], list[Item]] = {}


def words(text: str) -> list[str]:
    """Lower-case tokens of ``text``: alphanumeric runs and single punctuation marks."""
    return _WORD.findall(text.lower())


def load_items(data_dir: Path, datasets: Iterable[str] | None = None) -> dict[str, list[Item]]:
    """All items (scored or not) of every dataset present under ``data_dir``, by dataset.

    Missing datasets are skipped with a log line; results are memoised per file.
    """
    found: dict[str, list[Item]] = {}
    for name in datasets if datasets is not None else DATASETS:
        rel, _ = DATASETS[name]
        path = data_dir / rel
        try:
            key = (str(path.resolve()), name, path.stat().st_mtime)
        except OSError:
            log.info("dataset_missing", dataset=name, path=str(path))
            continue
        items = _CACHE.get(key)
        if items is None:
            try:
                items = load(name, data_dir, include_unscored=True)
            except DatasetNotFoundError:
                log.info("dataset_missing", dataset=name, path=str(path))
                continue
            _CACHE[key] = items
        found[name] = items
    return found


class ItemIndex:
    """A fast lookup from prompt text to the benchmark item it contains."""

    def __init__(self, items: Iterable[Item]) -> None:
        self._by_key: dict[str, list[tuple[Item, list[str]]]] = {}
        self._lengths: set[int] = set()
        self._first: set[str] = set()
        self._by_id: dict[str, Item] = {}
        for item in items:
            qwords = words(item.question)
            if not qwords:
                continue
            n = min(FINGERPRINT_WORDS, len(qwords))
            self._by_key.setdefault(" ".join(qwords[:n]), []).append((item, qwords))
            self._lengths.add(n)
            self._first.add(qwords[0])
            self._by_id[item.id] = item
        self._lengths_desc = sorted(self._lengths, reverse=True)

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, item_id: str) -> Item | None:
        """The item with this id, if indexed."""
        return self._by_id.get(item_id)

    def find(
        self, text: str, *, task_text: str | None = None, domain: str | None = None
    ) -> Item | None:
        """The item whose question appears in ``text`` (``task_text`` is tried first)."""
        if task_text:
            head = words(task_text[:_HEAD_CHARS])
            hit = self._match_at(head, 0, domain)
            if hit is not None:
                return hit
        return self._scan(words(text), domain)

    def _scan(self, tokens: Sequence[str], domain: str | None) -> Item | None:
        first = self._first
        for i, tok in enumerate(tokens):
            if tok in first:
                hit = self._match_at(tokens, i, domain)
                if hit is not None:
                    return hit
        return None

    def _match_at(self, tokens: Sequence[str], i: int, domain: str | None) -> Item | None:
        for n in self._lengths_desc:
            if i + n > len(tokens):
                continue
            cands = self._by_key.get(" ".join(tokens[i : i + n]))
            if cands:
                return self._best(cands, tokens, i, domain)
        return None

    @staticmethod
    def _best(
        cands: list[tuple[Item, list[str]]], tokens: Sequence[str], i: int, domain: str | None
    ) -> Item:
        if len(cands) == 1:
            return cands[0][0]
        if domain is not None and any(item.domain == domain for item, _ in cands):
            cands = [c for c in cands if c[0].domain == domain]
        best, best_score = cands[0][0], (-1, False)
        for item, qwords in cands:
            run = 0
            limit = min(len(qwords), len(tokens) - i)
            while run < limit and qwords[run] == tokens[i + run]:
                run += 1
            score = (run, run == len(qwords))
            if score > best_score:
                best, best_score = item, score
        return best
