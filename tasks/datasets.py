"""Benchmark items: loaders for MMLU-Redux, MATH-500, GSM8K and HumanEval, and seeded splits.

The data files are never part of the repository; they are read from a data
directory laid out like ``/work/shared/datasets`` (see :func:`data_dir`).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import platformdirs
import structlog

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DOMAINS",
    "DatasetError",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "Domain",
    "Item",
    "Splits",
    "canonical_dataset",
    "data_dir",
    "dataset_path",
    "format_mcq",
    "is_scored",
    "load",
    "split",
]

log = structlog.get_logger(__name__)

Domain = Literal["mmlu", "math", "gsm8k", "humaneval", "general"]
DOMAINS: tuple[Domain, ...] = ("mmlu", "math", "gsm8k", "humaneval", "general")

DATA_DIR_ENV = "HIERAMAS_DATA_DIR"
LETTERS = "ABCD"

# dataset name -> (relative file path, domain)
DATASETS: Mapping[str, tuple[str, Domain]] = MappingProxyType(
    {
        "mmlu_redux": ("mmlu_redux/mmlu_redux.jsonl", "mmlu"),
        "math500": ("math500/test.jsonl", "math"),
        "gsm8k": ("gsm8k/train.jsonl", "gsm8k"),
        "humaneval": ("humaneval/HumanEval.jsonl.gz", "humaneval"),
    }
)
_ALIASES = {
    "mmlu": "mmlu_redux",
    "mmlu-redux": "mmlu_redux",
    "math": "math500",
    "math-500": "math500",
}


class DatasetError(Exception):
    """Base class of dataset loading errors."""


class DatasetNotFoundError(DatasetError):
    """The dataset name is unknown or its file is missing."""


class DatasetFormatError(DatasetError):
    """A row of a data file is malformed; the message names the file and line."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Item:
    """One benchmark item as the agents and graders see it.

    ``question`` is the exact task text (MCQ: question plus lettered choices);
    ``answer`` is the gold answer: a letter (MMLU), boxed-answer LaTeX (MATH),
    a canonical decimal string (GSM8K) or the full reference function,
    prompt + canonical body (HumanEval).
    """

    id: str
    dataset: str
    domain: Domain
    question: str
    answer: str
    subject: str
    choices: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class Splits:
    """A deterministic train/validation/test partition; ``seed`` is part of the result."""

    train: tuple[Item, ...]
    validation: tuple[Item, ...]
    test: tuple[Item, ...]
    seed: int
    fractions: tuple[float, float, float]


def canonical_dataset(name: str) -> str:
    """The canonical dataset name for ``name`` (accepts ``mmlu``/``math`` aliases)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        known = ", ".join(sorted(DATASETS))
        raise DatasetNotFoundError(f"unknown dataset {name!r}; known: {known}")
    return key


def _repo_root(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        if (directory / "pyproject.toml").is_file() and (directory / "tasks").is_dir():
            return directory
    return None


def data_dir(explicit: Path | str | None = None) -> Path:
    """Resolve the data directory.

    Order: ``explicit``; ``$HIERAMAS_DATA_DIR``; ``<repo>/../shared/datasets``
    when it exists (the repo is found from the working directory upwards);
    else the user cache dir (``platformdirs``) where :mod:`.download` puts files.
    """
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    root = _repo_root(Path.cwd().resolve())
    if root is not None:
        shared = root.parent / "shared" / "datasets"
        if shared.is_dir():
            return shared
    return Path(platformdirs.user_cache_dir("hieramas")) / "datasets"


def dataset_path(dataset: str, data_dir_: Path | str | None = None) -> Path:
    """Path of the data file of ``dataset`` under the resolved data directory."""
    rel, _ = DATASETS[canonical_dataset(dataset)]
    return data_dir(data_dir_) / rel


def is_scored(item: Item) -> bool:
    """Whether ``item`` counts for accuracy (MMLU-Redux: only ``error_type == "ok"``)."""
    return bool(item.meta.get("error_type", "ok") == "ok")


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetFormatError(path, lineno, f"invalid JSON ({exc.msg})") from exc
                if not isinstance(row, dict):
                    raise DatasetFormatError(path, lineno, "row is not a JSON object")
                yield lineno, row
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise DatasetNotFoundError(
                f"{path} not found; point --data-dir or ${DATA_DIR_ENV} at a copy of the"
                " datasets, or download them with `hieramas data fetch`"
            ) from exc
        raise DatasetFormatError(path, 0, f"unreadable file ({exc})") from exc


def _field(row: Mapping[str, Any], key: str, kind: type, path: Path, line: int) -> Any:
    if key not in row:
        raise DatasetFormatError(path, line, f"missing field {key!r}")
    value = row[key]
    if kind is int and isinstance(value, bool):
        raise DatasetFormatError(path, line, f"field {key!r} must be int, got bool")
    if not isinstance(value, kind):
        raise DatasetFormatError(
            path, line, f"field {key!r} must be {kind.__name__}, got {type(value).__name__}"
        )
    return value


def format_mcq(question: str, choices: Sequence[str]) -> str:
    """The MCQ task text: the question, a blank line, then ``A. ...`` to ``D. ...``."""
    lines = [f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices)]
    return question.strip() + "\n\n" + "\n".join(lines)


def _load_mmlu(path: Path) -> list[Item]:
    items: list[Item] = []
    for line, row in _rows(path):
        item_id = _field(row, "id", str, path, line)
        subject = _field(row, "subject", str, path, line)
        question = _field(row, "question", str, path, line)
        choices = _field(row, "choices", list, path, line)
        if len(choices) != 4 or not all(isinstance(c, str) for c in choices):
            raise DatasetFormatError(path, line, "field 'choices' must be 4 strings")
        answer = _field(row, "answer", int, path, line)
        if not 0 <= answer < 4:
            raise DatasetFormatError(path, line, f"field 'answer' out of range 0-3: {answer}")
        error_type = _field(row, "error_type", str, path, line)
        meta = {"error_type": error_type, "correct_answer": row.get("correct_answer")}
        items.append(
            Item(
                id=item_id,
                dataset="mmlu_redux",
                domain="mmlu",
                question=format_mcq(question, choices),
                answer=LETTERS[answer],
                subject=subject,
                choices=tuple(choices),
                meta=meta,
            )
        )
    return items


def _load_math(path: Path) -> list[Item]:
    items: list[Item] = []
    for index, (line, row) in enumerate(_rows(path)):
        problem = _field(row, "problem", str, path, line)
        answer = _field(row, "answer", str, path, line)
        subject = _field(row, "subject", str, path, line)
        solution = _field(row, "solution", str, path, line)
        level = _field(row, "level", int, path, line)
        items.append(
            Item(
                id=f"math500/{index}",
                dataset="math500",
                domain="math",
                question=problem,
                answer=answer,
                subject=subject,
                meta={"solution": solution, "level": level, "unique_id": row.get("unique_id")},
            )
        )
    return items


_GSM8K_FINAL = re.compile(r"####\s*(-?[\d,]*\.?\d+)\s*$")


def _load_gsm8k(path: Path) -> list[Item]:
    items: list[Item] = []
    for index, (line, row) in enumerate(_rows(path)):
        question = _field(row, "question", str, path, line)
        solution = _field(row, "answer", str, path, line)
        match = _GSM8K_FINAL.search(solution)
        if match is None:
            raise DatasetFormatError(path, line, "answer does not end with '#### <number>'")
        number = match.group(1).replace(",", "")
        items.append(
            Item(
                id=f"gsm8k/{index}",
                dataset="gsm8k",
                domain="gsm8k",
                question=question,
                answer=number,
                subject="gsm8k",
                meta={"solution": solution},
            )
        )
    return items


def _load_humaneval(path: Path) -> list[Item]:
    items: list[Item] = []
    for line, row in _rows(path):
        task_id = _field(row, "task_id", str, path, line)
        prompt = _field(row, "prompt", str, path, line)
        solution = _field(row, "canonical_solution", str, path, line)
        test = _field(row, "test", str, path, line)
        entry_point = _field(row, "entry_point", str, path, line)
        items.append(
            Item(
                id=task_id,
                dataset="humaneval",
                domain="humaneval",
                question=prompt,
                answer=prompt + solution,
                subject="humaneval",
                meta={
                    "prompt": prompt,
                    "canonical_solution": solution,
                    "test": test,
                    "entry_point": entry_point,
                },
            )
        )
    return items


_LOADERS: Mapping[str, Callable[[Path], list[Item]]] = {
    "mmlu_redux": _load_mmlu,
    "math500": _load_math,
    "gsm8k": _load_gsm8k,
    "humaneval": _load_humaneval,
}


def load(
    dataset: str, data_dir: Path | str | None = None, *, include_unscored: bool = False
) -> list[Item]:
    """Load all items of ``dataset`` (``mmlu_redux``, ``math500``, ``gsm8k``, ``humaneval``).

    MMLU-Redux rows with ``error_type != "ok"`` are dropped unless
    ``include_unscored`` (they keep ``meta["error_type"]`` for :func:`is_scored`).
    Raises :class:`DatasetNotFoundError` or :class:`DatasetFormatError`.
    """
    name = canonical_dataset(dataset)
    path = dataset_path(name, data_dir)
    items = _LOADERS[name](path)
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise DatasetFormatError(path, 0, f"duplicate item id {item.id!r}")
        seen.add(item.id)
    if not include_unscored:
        items = [item for item in items if is_scored(item)]
    log.debug("dataset_loaded", dataset=name, path=str(path), items=len(items))
    return items


def _allocate(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Largest-remainder allocation of ``n`` items over three fractions."""
    raw = [n * f for f in fractions]
    counts = [int(r) for r in raw]
    order = sorted(range(3), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts[0], counts[1], counts[2]


def split(
    items: Sequence[Item],
    *,
    seed: int,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> Splits:
    """Seeded split stratified by subject; the same seed and items give the same split.

    Within each subject the items (sorted by id) are shuffled by a generator
    seeded from ``(seed, subject)`` and cut by largest-remainder rounding.
    The order inside each part follows the input order.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1: {fractions}")
    by_subject: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_subject[item.subject].append(item)
    part_of: dict[str, int] = {}
    for subject, group in by_subject.items():
        ids = sorted(item.id for item in group)
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate item ids in subject {subject!r}")
        random.Random(f"hieramas-split:{seed}:{subject}").shuffle(ids)
        n_train, n_val, _ = _allocate(len(ids), fractions)
        for position, item_id in enumerate(ids):
            part_of[item_id] = 0 if position < n_train else 1 if position < n_train + n_val else 2
    parts: tuple[list[Item], list[Item], list[Item]] = ([], [], [])
    for item in items:
        parts[part_of[item.id]].append(item)
    return Splits(
        train=tuple(parts[0]),
        validation=tuple(parts[1]),
        test=tuple(parts[2]),
        seed=seed,
        fractions=(float(fractions[0]), float(fractions[1]), float(fractions[2])),
    )
