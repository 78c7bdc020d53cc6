"""Profile data of the emulated pool: schema, loading and validation.

Every behavioural parameter lives in a YAML file (``profiles.yaml`` shipped
with the package is the default); this module only validates it.
"""

from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "DEFAULT_PROFILES",
    "AnswerKind",
    "Behaviour",
    "DomainSpec",
    "Latency",
    "LogNormal",
    "ModelProfile",
    "PoolProfiles",
    "Prices",
    "ProfileError",
    "RoleFamily",
    "RoleFitOverride",
    "load_profiles",
    "normalise_role",
]

AnswerKind = Literal["mcq", "math", "number", "code"]

DEFAULT_PROFILES = "profiles.yaml"
"""Name of the package resource holding the default pool."""


class ProfileError(ValueError):
    """A profile file that cannot be read or does not validate."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogNormal(_Strict):
    """A log-normal distribution given by its median and log-space sd."""

    median: float = Field(gt=0)
    sigma: float = Field(default=0.0, ge=0, le=3)


class Latency(_Strict):
    """Time to first token (seconds) and decoding speed (tokens per second)."""

    ttft_s: LogNormal
    tokens_per_s: LogNormal


class Prices(_Strict):
    """US$ per million tokens."""

    input_per_m: float = Field(ge=0)
    output_per_m: float = Field(ge=0)


class RoleFitOverride(_Strict):
    """A model's own role fit for one role family (``None`` = family default)."""

    match: float | None = None
    mismatch: float | None = None
    by_subject: dict[str, float] = Field(default_factory=dict)


class ModelProfile(_Strict):
    """One emulated model."""

    model_id: str
    prices: Prices
    accuracy: dict[str, float]
    synthesis_skill: float = Field(ge=0, le=1)
    susceptibility: float = Field(ge=0, le=1)
    verbosity: float = Field(gt=0)
    malformed_rate: float = Field(ge=0, le=0.5)
    latency: Latency
    subject_skill: dict[str, dict[str, float]] = Field(default_factory=dict)
    role_fit: dict[str, RoleFitOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_accuracy(self) -> ModelProfile:
        for domain, acc in self.accuracy.items():
            if not 0.0 < acc < 1.0:
                raise ValueError(f"accuracy[{domain}] must be in (0, 1), got {acc}")
            if acc / (1.0 - self.malformed_rate) >= 0.999:
                raise ValueError(
                    f"accuracy[{domain}]={acc} is unreachable with malformed_rate="
                    f"{self.malformed_rate}"
                )
        return self


class DomainSpec(_Strict):
    """A benchmark domain: its calibration dataset and item-difficulty model."""

    dataset: str
    answer_kind: AnswerKind
    discrimination: float = Field(gt=0)
    difficulty_sd: float = Field(gt=0)
    difficulty_shifts: dict[str, dict[str, float]] = Field(default_factory=dict)
    output_tokens: LogNormal


class RoleFamily(_Strict):
    """Roles that share a field of expertise and the subjects of that field."""

    roles: list[str]
    subjects: dict[str, list[str]]
    match: float
    mismatch: float
    predecessors: Literal["herd", "synth"] = "herd"
    """How a proposer in this role uses its predecessors' answers: ``herd`` (adopt their
    majority with the model's susceptibility) or ``synth`` (review them like a synthesizer)."""


class Behaviour(_Strict):
    """Pool-wide behaviour parameters."""

    difficulty_salt: str
    self_solve_factor: float = Field(ge=0, le=1)
    subject_spread: float = Field(ge=0)
    distractor_concentration: float = Field(ge=0)
    wrong_candidates: int = Field(ge=1, le=16)
    code_bug_variants: int = Field(ge=1, le=16)
    synthesizer_sees_predecessors: bool = False
    """Count the predecessors' answers as extra candidates when a synthesizer decides."""


class GenericSpec(_Strict):
    """Replies to prompts that match no benchmark item."""

    output_tokens: LogNormal


class PoolProfiles(_Strict):
    """The whole profile file."""

    version: Literal[1]
    name: str
    behaviour: Behaviour
    domains: dict[str, DomainSpec]
    generic: GenericSpec
    role_families: dict[str, RoleFamily]
    models: dict[str, ModelProfile] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_references(self) -> PoolProfiles:
        for name, model in self.models.items():
            unknown = set(model.accuracy) - set(self.domains)
            if unknown:
                raise ValueError(f"model {name}: accuracy for unknown domains {sorted(unknown)}")
            missing = set(self.domains) - set(model.accuracy)
            if missing:
                raise ValueError(f"model {name}: no accuracy for domains {sorted(missing)}")
            bad_fams = set(model.role_fit) - set(self.role_families)
            if bad_fams:
                raise ValueError(f"model {name}: unknown role families {sorted(bad_fams)}")
        seen: dict[str, str] = {}
        for fam, spec in self.role_families.items():
            for role in spec.roles:
                key = normalise_role(role)
                if key in seen:
                    raise ValueError(f"role {role!r} is in families {seen[key]} and {fam}")
                seen[key] = fam
        return self


def normalise_role(role: str) -> str:
    """Case- and punctuation-insensitive role key (``"Math Solver"`` → ``"mathsolver"``)."""
    return re.sub(r"[^a-z0-9]", "", role.lower())


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_text(path: str | Path | None) -> tuple[str, str]:
    if path is None:
        res = resources.files("hieramas.emulator").joinpath(DEFAULT_PROFILES)
        return res.read_text(encoding="utf-8"), f"<package>/{DEFAULT_PROFILES}"
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8"), str(p)
    except OSError as exc:
        raise ProfileError(f"cannot read profile file {p}: {exc}") from exc


def load_profiles(path: str | Path | None = None) -> PoolProfiles:
    """Load and validate a profile file (``None`` = the packaged default pool).

    A top-level ``model_defaults`` mapping is deep-merged under every model.
    Raises :class:`ProfileError` with the offending field on any problem.
    """
    text, where = _read_text(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{where}: invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: expected a mapping at top level")
    defaults = raw.pop("model_defaults", {}) or {}
    models = raw.get("models")
    if isinstance(models, dict) and isinstance(defaults, dict):
        raw["models"] = {
            name: _deep_merge(defaults, spec if isinstance(spec, dict) else {})
            for name, spec in models.items()
        }
    try:
        return PoolProfiles.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(f"{where}: {exc}") from exc
