"""Fetch the benchmark data from its public sources into the data directory.

For users with internet access (this project's own machines have none: the
data is read from ``../shared/datasets``).  Sources:

* MATH-500: ``HuggingFaceH4/MATH-500`` (``test.jsonl``), mirror: ``openai/prm800k`` on GitHub;
* HumanEval: ``openai/human-eval`` on GitHub (``HumanEval.jsonl.gz``);
* GSM8K: ``openai/grade-school-math`` on GitHub (``train.jsonl``);
* MMLU-Redux: ``edinburgh-dawg/mmlu-redux-2.0`` through the Hugging Face
  dataset viewer API (57 subjects x 100 rows), converted to the layout
  described in ``datasets/README.md`` (``id``, ``subject``, ``question``,
  ``choices``, ``answer``, normalised ``error_type``, ``correct_answer``).

Every file is written to a temporary name, checked with the project's own
loader, then renamed, so a failed or malformed download never replaces good
data.

    python -m hieramas.tasks.download [mmlu_redux math500 humaneval gsm8k] [--dest DIR]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import structlog
import typer
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from hieramas.tasks.datasets import (
    DATASETS,
    DatasetError,
    canonical_dataset,
    data_dir,
    load,
)

__all__ = [
    "MMLU_SUBJECTS",
    "ROWS_URL_ENV",
    "SOURCES",
    "DownloadError",
    "Progress",
    "Source",
    "app",
    "download",
    "main",
]

log = structlog.get_logger(__name__)

HF = "https://huggingface.co"
GITHUB_RAW = "https://raw.githubusercontent.com"
HF_ROWS = "https://datasets-server.huggingface.co/rows"
ROWS_URL_ENV = "HIERAMAS_HF_ROWS_URL"
"""Overrides :data:`HF_ROWS` (a mirror of the Hugging Face dataset viewer's rows API)."""

Progress = Callable[[str, int, int], None]
"""``(dataset, parts done, parts)``: MMLU-Redux counts subjects, other datasets one file."""
MMLU_REDUX = "edinburgh-dawg/mmlu-redux-2.0"

MMLU_SUBJECTS = [
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "business_ethics",
    "clinical_knowledge",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_medicine",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "econometrics",
    "electrical_engineering",
    "elementary_mathematics",
    "formal_logic",
    "global_facts",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_european_history",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_mathematics",
    "high_school_microeconomics",
    "high_school_physics",
    "high_school_psychology",
    "high_school_statistics",
    "high_school_us_history",
    "high_school_world_history",
    "human_aging",
    "human_sexuality",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "machine_learning",
    "management",
    "marketing",
    "medical_genetics",
    "miscellaneous",
    "moral_disputes",
    "moral_scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "professional_accounting",
    "professional_law",
    "professional_medicine",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
    "virology",
    "world_religions",
]


class DownloadError(RuntimeError):
    """A source could not be fetched, or what it returned is not valid data."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where one dataset file comes from: mirrors tried in order."""

    urls: tuple[str, ...]


SOURCES: dict[str, Source] = {
    "math500": Source(
        (
            f"{HF}/datasets/HuggingFaceH4/MATH-500/resolve/main/test.jsonl",
            f"{GITHUB_RAW}/openai/prm800k/main/prm800k/math_splits/test.jsonl",
        )
    ),
    "humaneval": Source((f"{GITHUB_RAW}/openai/human-eval/master/data/HumanEval.jsonl.gz",)),
    "gsm8k": Source(
        (f"{GITHUB_RAW}/openai/grade-school-math/master/grade_school_math/data/train.jsonl",)
    ),
}


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in (408, 425, 429) or exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


_retry = retry(
    retry=retry_if_exception(_transient),
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.5, max=8),
    reraise=True,
)


@_retry
def _get(client: httpx.Client, url: str, params: dict[str, Any] | None = None) -> bytes:
    response = client.get(url, params=params)
    response.raise_for_status()
    return response.content


def _fetch_first(client: httpx.Client, urls: Sequence[str]) -> bytes:
    errors: list[str] = []
    for url in urls:
        try:
            return _get(client, url)
        except httpx.HTTPError as exc:
            errors.append(f"{url}: {exc}")
            log.warning("download_mirror_failed", url=url, error=str(exc))
    raise DownloadError("all sources failed: " + "; ".join(errors))


def normalise_error_type(value: object) -> str:
    """``"Wrong Groundtruth"`` -> ``"wrong_groundtruth"``; empty -> ``"ok"``."""
    text = re.sub(r"[^a-z0-9]+", "_", str(value or "ok").strip().lower()).strip("_")
    return text or "ok"


def _mmlu_rows(
    client: httpx.Client, rows_url: str, dataset: str, on_progress: Progress | None = None
) -> bytes:
    lines: list[str] = []
    subjects = list(MMLU_SUBJECTS)
    for done, subject in enumerate(subjects):
        if on_progress is not None:
            on_progress("mmlu_redux", done, len(subjects))
        offset, total = 0, None
        while total is None or offset < total:
            params = {
                "dataset": dataset,
                "config": subject,
                "split": "test",
                "offset": offset,
                "length": 100,
            }
            try:
                page = json.loads(_get(client, rows_url, params))
                total = int(page["num_rows_total"])
                rows = page["rows"]
            except (ValueError, KeyError, TypeError) as exc:
                raise DownloadError(f"unexpected reply for {subject} at {offset}: {exc}") from exc
            if not rows:
                break
            for entry in rows:
                row = entry["row"]
                index = int(entry["row_idx"])
                lines.append(
                    json.dumps(
                        {
                            "id": f"{subject}/{index}",
                            "subject": subject,
                            "question": row["question"],
                            "choices": list(row["choices"]),
                            "answer": int(row["answer"]),
                            "error_type": normalise_error_type(row.get("error_type")),
                            "correct_answer": row.get("correct_answer"),
                        }
                    )
                )
            offset += len(rows)
    if on_progress is not None:
        on_progress("mmlu_redux", len(subjects), len(subjects))
    return ("\n".join(lines) + "\n").encode()


def _atomic_install(dest_root: Path, dataset: str, payload: bytes) -> Path:
    rel, _ = DATASETS[dataset]
    target = dest_root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=dest_root))
    try:
        staged = staging / rel
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_bytes(payload)
        try:
            count = len(load(dataset, staging, include_unscored=True))
        except DatasetError as exc:
            raise DownloadError(f"downloaded {dataset} is not valid: {exc}") from exc
        if count == 0:
            raise DownloadError(f"downloaded {dataset} has no rows")
        os.replace(staged, target)
        log.info("dataset_downloaded", dataset=dataset, path=str(target), rows=count)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(
    datasets: Sequence[str] = tuple(DATASETS),
    dest: Path | str | None = None,
    *,
    force: bool = False,
    client: httpx.Client | None = None,
    sources: dict[str, Source] | None = None,
    rows_url: str | None = None,
    on_progress: Progress | None = None,
) -> dict[str, Path]:
    """Download ``datasets`` into ``dest`` (default: :func:`data_dir`); returns their paths.

    Files already present are kept unless ``force``.  ``client``, ``sources``
    and ``rows_url`` (default ``$HIERAMAS_HF_ROWS_URL``, else :data:`HF_ROWS`) exist for
    mirrors and tests.  ``on_progress`` hears each dataset's progress (:data:`Progress`).
    """
    rows_url = rows_url or os.environ.get(ROWS_URL_ENV) or HF_ROWS
    root = data_dir(dest)
    root.mkdir(parents=True, exist_ok=True)
    table = sources or SOURCES
    own_client = client is None
    http = client or httpx.Client(timeout=60.0, follow_redirects=True)
    done: dict[str, Path] = {}
    try:
        for name in datasets:
            dataset = canonical_dataset(name)
            target = root / DATASETS[dataset][0]
            if target.exists() and not force:
                log.info("dataset_present", dataset=dataset, path=str(target))
                done[dataset] = target
                continue
            if dataset == "mmlu_redux":
                payload = _mmlu_rows(http, rows_url, MMLU_REDUX, on_progress)
            else:
                if on_progress is not None:
                    on_progress(dataset, 0, 1)
                payload = _fetch_first(http, table[dataset].urls)
                if on_progress is not None:
                    on_progress(dataset, 1, 1)
            done[dataset] = _atomic_install(root, dataset, payload)
    finally:
        if own_client:
            http.close()
    return done


app = typer.Typer(add_completion=False, help="Download benchmark data from public sources.")


@app.command()
def fetch(
    datasets: Annotated[
        list[str] | None, typer.Argument(help="mmlu_redux, math500, humaneval, gsm8k (all)")
    ] = None,
    dest: Annotated[Path | None, typer.Option(help="data directory (default: resolved)")] = None,
    force: Annotated[bool, typer.Option(help="replace files already present")] = False,
) -> None:
    """Download the datasets (a progress bar on stderr) and print where they went."""
    from hieramas.progress import ProgressDisplay

    try:
        with ProgressDisplay() as progress:
            paths = download(datasets or list(DATASETS), dest, force=force, on_progress=progress)
    except (DownloadError, DatasetError, httpx.HTTPError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for dataset, path in paths.items():
        typer.echo(f"{dataset}: {path}")


def main() -> None:
    """Entry point of ``python -m hieramas.tasks.download``."""
    app()


if __name__ == "__main__":
    main()
