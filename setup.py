"""Package map: the top-level folders install as sub-packages of ``hieramas``.

``actors/`` becomes ``hieramas.actors`` and so on, so that no generic name
(``actors``, ``tasks``...) lands in site-packages.  Metadata lives in
``pyproject.toml``; this file only computes the package list.
"""

from __future__ import annotations

from setuptools import find_packages, setup

PACKAGE_ROOTS = {
    "hieramas": "hieramas",
    "hieramas.actors": "actors",
    "hieramas.controller": "controller",
    "hieramas.learner": "learner",
    "hieramas.llm": "llm",
    "hieramas.emulator": "emulator",
    "hieramas.tasks": "tasks",
}


def _packages() -> list[str]:
    found: list[str] = []
    for package, folder in PACKAGE_ROOTS.items():
        found.append(package)
        found.extend(f"{package}.{sub}" for sub in find_packages(folder))
    return found


setup(package_dir=PACKAGE_ROOTS, packages=_packages())
