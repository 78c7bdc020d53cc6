"""Run mypy over the installed package layout.

The top-level folders (``actors/``, ``controller/``...) install as
``hieramas.actors`` and so on; mypy cannot follow setuptools' editable import
hook, so this script mirrors the package map as a tree of symlinks under
``build/typecheck`` and checks that tree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOTS = {
    "actors": "actors",
    "controller": "controller",
    "learner": "learner",
    "llm": "llm",
    "emulator": "emulator",
    "tasks": "tasks",
}


def main() -> int:
    farm = ROOT / "build" / "typecheck"
    shutil.rmtree(farm, ignore_errors=True)
    package = farm / "hieramas"
    package.mkdir(parents=True)
    for entry in (ROOT / "hieramas").iterdir():
        (package / entry.name).symlink_to(entry)
    for name, folder in ROOTS.items():
        (package / name).symlink_to(ROOT / folder)
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "-p",
        "hieramas",
    ]
    return subprocess.call(cmd, cwd=farm)


if __name__ == "__main__":
    raise SystemExit(main())
