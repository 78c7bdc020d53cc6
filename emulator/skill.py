"""Who solves what: item difficulty, subject skill, role fit and calibrated ability.

A solo attempt of model ``m`` in role ``ρ`` on item ``i`` of domain ``d`` and
subject ``s`` succeeds with the 2PL probability
``σ(a_d · (θ[m,d] + skill[m,d,s] + role_fit[m,ρ,d,s] − b_i))``; θ is
calibrated at construction so that, without a role, the mean success
probability over the domain's calibration items is the profile's target
(corrected for the malformed-answer rate).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import structlog

from hieramas.emulator.calibration import calibrate_theta, mean_p
from hieramas.emulator.hashing import normal
from hieramas.emulator.profiles import PoolProfiles, normalise_role
from hieramas.tasks.datasets import Item

__all__ = ["CalibrationEntry", "SkillModel"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CalibrationEntry:
    """The calibrated ability of one model in one domain."""

    model: str
    domain: str
    theta: float
    target: float
    target_p: float
    mean_p: float
    n_items: int


class SkillModel:
    """Success probabilities of solo attempts, calibrated once at construction."""

    def __init__(self, profiles: PoolProfiles, calibration_items: Mapping[str, Sequence[Item]]):
        self._profiles = profiles
        self._salt = profiles.behaviour.difficulty_salt
        self._difficulty: dict[str, float] = {}
        self._offsets: dict[tuple[str, str, str], float] = {}
        self._role_fit: dict[tuple[str, str, str, str], float] = {}
        self._role_family: dict[str, str] = {
            normalise_role(role): fam
            for fam, spec in profiles.role_families.items()
            for role in spec.roles
        }
        self._theta: dict[tuple[str, str], float] = {}
        self.calibration: list[CalibrationEntry] = []
        for domain, items in calibration_items.items():
            if domain not in profiles.domains or not items:
                continue
            self._calibrate_domain(domain, items)

    def _calibrate_domain(self, domain: str, items: Sequence[Item]) -> None:
        spec = self._profiles.domains[domain]
        b = np.array([self.difficulty(item) for item in items], dtype=np.float64)
        for name, model in self._profiles.models.items():
            target = model.accuracy[domain]
            target_p = target / (1.0 - model.malformed_rate)
            off = np.array(
                [self.subject_offset(name, domain, item.subject) for item in items],
                dtype=np.float64,
            )
            theta = calibrate_theta(b, off, spec.discrimination, target_p)
            self._theta[(name, domain)] = theta
            entry = CalibrationEntry(
                model=name,
                domain=domain,
                theta=theta,
                target=target,
                target_p=target_p,
                mean_p=mean_p(theta, b, off, spec.discrimination),
                n_items=len(items),
            )
            self.calibration.append(entry)
        log.debug("calibrated", domain=domain, items=len(items), models=len(self._profiles.models))

    def calibrated(self, model: str, domain: str) -> bool:
        """Whether θ is known for ``model`` in ``domain``."""
        return (model, domain) in self._theta

    def difficulty(self, item: Item) -> float:
        """The item's latent difficulty ``b_i`` (shared by all models, independent of seed)."""
        b = self._difficulty.get(item.id)
        if b is None:
            spec = self._profiles.domains.get(item.domain)
            if spec is None:
                b = normal(self._salt, "difficulty", item.id)
            else:
                shift = sum(
                    table.get(str(item.meta.get(key)), 0.0)
                    for key, table in spec.difficulty_shifts.items()
                )
                b = shift + spec.difficulty_sd * normal(self._salt, "difficulty", item.id)
            self._difficulty[item.id] = b
        return b

    def subject_offset(self, model: str, domain: str, subject: str) -> float:
        """Explicit subject skill plus a hashed idiosyncratic offset of ``model`` on ``subject``."""
        key = (model, domain, subject)
        off = self._offsets.get(key)
        if off is None:
            prof = self._profiles.models[model]
            explicit = prof.subject_skill.get(domain, {}).get(subject, 0.0)
            spread = self._profiles.behaviour.subject_spread
            off = explicit + spread * normal(self._salt, "subject", model, domain, subject)
            self._offsets[key] = off
        return off

    def role_family(self, role: str) -> str | None:
        """The role family of ``role`` (exact name, else a known role name inside it)."""
        key = normalise_role(role)
        fam = self._role_family.get(key)
        if fam is None and key:
            matches = [k for k in self._role_family if k in key]
            if matches:
                fam = self._role_family[max(matches, key=len)]
        return fam

    def role_fit(self, model: str, role: str | None, domain: str, subject: str) -> float:
        """Ability shift of ``model`` playing ``role`` on a ``subject`` item (0 for no role)."""
        if not role:
            return 0.0
        key = (model, role, domain, subject)
        fit = self._role_fit.get(key)
        if fit is None:
            fit = self._compute_role_fit(model, role, domain, subject)
            if len(self._role_fit) < 100_000:
                self._role_fit[key] = fit
        return fit

    def _compute_role_fit(self, model: str, role: str, domain: str, subject: str) -> float:
        fam_name = self.role_family(role)
        if fam_name is None:
            return 0.0
        fam = self._profiles.role_families[fam_name]
        subjects = fam.subjects.get(domain, [])
        matches = "*" in subjects or subject in subjects
        override = self._profiles.models[model].role_fit.get(fam_name)
        if matches:
            base = fam.match if override is None or override.match is None else override.match
            extra = 0.0 if override is None else override.by_subject.get(subject, 0.0)
            return base + extra
        if override is not None and override.mismatch is not None:
            return override.mismatch
        return fam.mismatch

    def theta(self, model: str, domain: str) -> float:
        """Calibrated ability; raises ``KeyError`` if the domain had no calibration items."""
        return self._theta[(model, domain)]

    def p_solo(self, model: str, item: Item, role: str | None = None) -> float:
        """Probability that a solo attempt of ``model`` in ``role`` answers ``item`` correctly."""
        spec = self._profiles.domains[item.domain]
        z = (
            self.theta(model, item.domain)
            + self.subject_offset(model, item.domain, item.subject)
            + self.role_fit(model, role, item.domain, item.subject)
            - self.difficulty(item)
        )
        return 1.0 / (1.0 + math.exp(-spec.discrimination * z))
