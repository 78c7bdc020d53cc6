"""Where assembled model files live."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["MODEL_DIR_ENV", "model_dir"]

MODEL_DIR_ENV = "HIERAMAS_MODEL_DIR"


def model_dir() -> Path:
    """The model cache: ``$HIERAMAS_MODEL_DIR`` if set, else ``<user cache>/hieramas/models``."""
    override = os.environ.get(MODEL_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("hieramas")) / "models"
