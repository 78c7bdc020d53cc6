"""A policy lineage: one policy trained on one slot layout, its trainer, and its versions.

A lineage starts from a fresh (uniform) policy when the learner first sees a
config, or when the config changes to one with another slot layout (other
supernodes, proposer counts or LLMs): a policy cannot carry over to a layout it
has no logits for.  Its published versions form a chain (each names its parent);
:attr:`Lineage.heads` lists the versions that were current, in order, so the
learner can tell how stale a sampled episode is (:meth:`Lineage.lag`).
A rollback to an older version of the lineage makes it the head again: training
continues from its weights, with fresh optimizer moments.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from hieramas.controller.config import HieraConfig
from hieramas.learner.checkpoint import CheckpointMeta, decode_checkpoint, encode_checkpoint
from hieramas.learner.embeddings import TextEmbedder
from hieramas.learner.policy import Policy
from hieramas.learner.provider import layout_key
from hieramas.learner.reinforce import TrainConfig, Trainer
from hieramas.learner.slots import SlotLayout, SlotOptions

__all__ = ["Lineage"]


class Lineage:
    """The policy being trained and its trainer (not thread-safe: one trainer thread)."""

    def __init__(
        self,
        lineage_id: str,
        config_name: str,
        config_version: int,
        policy: Policy,
        trainer: Trainer,
        *,
        seed: int,
        heads: list[int] | None = None,
        pending_publish: bool = True,
    ) -> None:
        self.id = lineage_id
        self.config_name = config_name
        self.config_version = config_version
        self.policy = policy
        self.trainer = trainer
        self.seed = seed
        self.heads: list[int] = list(heads or [])
        self.pending_publish = pending_publish
        """The policy has changed since its last published version (or was never published)."""
        self._key = layout_key(policy.layout)
        self._blob: bytes | None = None  # the encoded state, until the policy changes

    @classmethod
    def create(
        cls,
        config: HieraConfig,
        config_version: int,
        embedder: TextEmbedder,
        train: TrainConfig,
        *,
        seed: int,
        hidden: int = 64,
        slot_actions: bool = False,
        options: SlotOptions | None = None,
        kind_columns: bool = False,
    ) -> Lineage:
        """A fresh lineage for ``config`` (a uniform policy, nothing published yet)."""
        layout = SlotLayout.from_config(config, options=options or SlotOptions())
        policy = Policy.create(
            config,
            embedder,
            layout=layout,
            hidden=hidden,
            seed=seed,
            slot_actions=slot_actions,
            kind_columns=kind_columns,
        )
        return cls(
            uuid.uuid4().hex[:12],
            config.name,
            config_version,
            policy,
            Trainer(policy, embedder, train),
            seed=seed,
        )

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], embedder: TextEmbedder, train: TrainConfig
    ) -> Lineage:
        """Rebuild a lineage saved by :meth:`to_state` (policy, optimizer, baseline, step)."""
        checkpoint = decode_checkpoint(bytes(state["checkpoint"]))
        policy = checkpoint.policy()
        trainer = Trainer(policy, embedder, train)
        checkpoint.restore_trainer(trainer)
        return cls(
            str(state["id"]),
            str(state["config_name"]),
            int(state["config_version"]),
            policy,
            trainer,
            seed=int(state["seed"]),
            heads=[int(v) for v in state.get("heads") or ()],
            pending_publish=bool(state.get("pending_publish")),
        )

    def to_state(self) -> dict[str, Any]:
        """Everything needed to resume: the checkpoint with the trainer, heads, flags."""
        if self._blob is None:
            self._blob = encode_checkpoint(
                self.policy, self.meta(self.head or 0), trainer=self.trainer
            )
        return {
            "id": self.id,
            "config_name": self.config_name,
            "config_version": self.config_version,
            "seed": self.seed,
            "heads": list(self.heads),
            "pending_publish": self.pending_publish,
            "checkpoint": self._blob,
        }

    @property
    def layout(self) -> SlotLayout:
        return self.policy.layout

    @property
    def head(self) -> int | None:
        """The version training continues from (``None`` before the first publish)."""
        return self.heads[-1] if self.heads else None

    @property
    def step(self) -> int:
        """Updates made so far."""
        return self.trainer.step

    def fits(self, config: HieraConfig) -> bool:
        """Whether ``config`` has this lineage's slot layout."""
        mine = SlotLayout.from_config(config, options=self.layout.options)
        return layout_key(mine) == self._key

    def lag(self, version: int | None) -> int | None:
        """How many heads came after ``version`` was last head (``None``: not of this lineage)."""
        if version is None or version not in self.heads:
            return None
        return self.heads[::-1].index(version)  # 0: it is the head

    def changed(self) -> None:
        """The policy was updated: it must be saved and published again."""
        self._blob = None
        self.pending_publish = True

    def meta(self, version: int, metrics: Mapping[str, float] | None = None) -> CheckpointMeta:
        """The checkpoint metadata of this policy as ``version``."""
        embedder = self.trainer.embedder
        return CheckpointMeta(
            version=version,
            parent=self.head,
            config_name=self.config_name,
            config_version=self.config_version,
            layout=self.layout.to_json(),
            embedder=embedder.name,
            dim=self.policy.net.dim,
            hidden=self.policy.net.hidden,
            seed=self.seed,
            rotation_n=self.policy.rotation_n,
            temperature=self.trainer.temperature,
            hyper=self.trainer.config.to_json(),
            metrics=dict(metrics or {}),
        )

    def encode_version(
        self, version: int, metrics: Mapping[str, float]
    ) -> tuple[bytes, dict[str, Any]]:
        """The published form of ``version``: the policy alone, and its store record's meta."""
        meta = self.meta(version, metrics)
        blob = encode_checkpoint(self.policy, meta)
        record = {k: v for k, v in asdict(meta).items() if k != "layout"}
        record.update(
            lineage=self.id,
            step=self.step,
            slots=len(self.layout.slots),
            llms=list(self.layout.llms),
        )
        return blob, record

    def published(self, version: int) -> None:
        """``version`` was published from the current policy: it is the head now."""
        self.heads.append(version)
        self.pending_publish = False
        self._blob = None  # its metadata names the new head

    def adopt(self, version: int, blob: bytes) -> None:
        """Continue from published ``version`` (a rollback): its weights, fresh Adam moments."""
        checkpoint = decode_checkpoint(blob)
        other = checkpoint.policy()
        if layout_key(other.layout) != self._key:
            raise ValueError(f"version {version} has another slot layout")
        self.policy.net.load_state_dict(other.net.state_dict())
        old = self.trainer
        self.trainer = Trainer(self.policy, old.embedder, old.config)
        self.trainer.step, self.trainer.baseline = old.step, old.baseline
        self.heads.append(version)
        self.pending_publish = False
        self._blob = None
