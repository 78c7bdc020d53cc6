"""Versioned policy checkpoints as self-describing bytes (safetensors + JSON metadata).

A checkpoint is one safetensors blob: the policy's tensors (``policy.*``), optionally
the trainer's optimizer tensors (``trainer.*``, for resuming training; the
controller does not need them), and a JSON header under the ``hieramas`` metadata
key (:class:`CheckpointMeta`: version, parent, metrics, seed, config, layout with
the LLM and role vocabularies, embedder, hyper-parameters, creation time).
safetensors holds no code, so loading a blob from the bus cannot execute anything.

With the default MiniLM embedder (384-d) and ``hidden=64``, the policy of
``configs/mmlu.yaml`` (8 roles, 8 LLMs, 92k parameters) is 0.40 MB: it fits a
JetStream KV value (1 MiB by default).  With the trainer state (Adam's moments)
it is 1.14 MB: keep that in the object store or on disk.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from hieramas.controller.config import HieraConfig
from hieramas.learner.policy import Policy, PolicyNet
from hieramas.learner.reinforce import Trainer
from hieramas.learner.slots import SlotLayout

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "CheckpointError",
    "CheckpointMeta",
    "check_fits",
    "decode_checkpoint",
    "encode_checkpoint",
    "layout_key",
    "read_blob",
    "write_blob",
]

CHECKPOINT_FORMAT = 1
_META_KEY = "hieramas"

ErrorCode = Literal["corrupt", "format", "incompatible"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: ``corrupt`` bytes, unknown ``format``, or
    ``incompatible`` with the config/embedder it is loaded for."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: ErrorCode = code


@dataclass(frozen=True, slots=True)
class CheckpointMeta:
    """What a checkpoint is: its lineage, what it belongs to, and how it was trained.

    ``temperature`` is the sampling temperature for exploring queries planned with
    this version (the trainer's schedule at save time).
    """

    version: int
    parent: int | None
    config_name: str
    config_version: int
    layout: dict[str, Any]
    embedder: str
    dim: int
    hidden: int
    seed: int
    rotation_n: int = 3
    temperature: float = 1.0
    hyper: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    created_unix: float = 0.0
    format: int = CHECKPOINT_FORMAT

    @property
    def llms(self) -> list[str]:
        """The action vocabulary (pseudo actions first)."""
        return [str(a) for a in self.layout["actions"]]

    @property
    def roles(self) -> list[str]:
        """The roles of the layout's slots, in order."""
        return list(dict.fromkeys(str(s[1]) for s in self.layout["slots"]))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A decoded checkpoint: metadata, policy tensors, trainer state (None if not saved)."""

    meta: CheckpointMeta
    policy_state: dict[str, torch.Tensor]
    trainer_state: dict[str, Any] | None = None

    def layout(self) -> SlotLayout:
        """The layout the policy was trained on."""
        return SlotLayout.from_json(self.meta.layout)

    def policy(
        self,
        *,
        config: HieraConfig | None = None,
        embedder: str | None = None,
    ) -> Policy:
        """Rebuild the policy (eval mode).

        With ``config``, its layout (under the checkpoint's slot options) must equal the
        checkpoint's; with ``embedder``, the embedder names must match; otherwise
        :class:`CheckpointError` ``incompatible``.
        """
        layout = self.layout()
        check_fits(f"checkpoint v{self.meta.version}", layout, self.meta.embedder, config, embedder)
        net = PolicyNet(
            layout,
            self.meta.dim,
            self.meta.hidden,
            slot_actions="slot_action" in self.policy_state,
            kind_columns="synth_col.weight" in self.policy_state,
        )
        try:
            net.load_state_dict(self.policy_state)
        except RuntimeError as exc:
            raise CheckpointError("corrupt", f"policy tensors do not fit: {exc}") from exc
        net.eval()
        return Policy(layout, net, rotation_n=self.meta.rotation_n)

    def restore_trainer(self, trainer: Trainer) -> None:
        """Load the saved trainer state into ``trainer`` (built on this checkpoint's policy)."""
        if self.trainer_state is None:
            raise CheckpointError("format", "this checkpoint carries no trainer state")
        try:
            trainer.load_state_dict(self.trainer_state)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError("incompatible", f"trainer state does not fit: {exc}") from exc


def encode_checkpoint(
    policy: Policy,
    meta: CheckpointMeta,
    *,
    trainer: Trainer | None = None,
) -> bytes:
    """Serialise ``policy`` (and ``trainer``'s state, if given) with ``meta``.

    ``meta.layout``, ``dim`` and ``hidden`` are checked against the policy;
    ``created_unix`` of 0 is set to now.
    """
    if meta.layout != policy.layout.to_json():
        raise ValueError("meta.layout is not the policy's layout")
    if (meta.dim, meta.hidden) != (policy.net.dim, policy.net.hidden):
        raise ValueError("meta.dim/hidden do not match the policy")
    if not meta.created_unix:
        meta = replace(meta, created_unix=time.time())
    tensors = {f"policy.{k}": v.detach().contiguous() for k, v in policy.net.state_dict().items()}
    header: dict[str, Any] = {"meta": asdict(meta), "trainer": None}
    if trainer is not None:
        state = trainer.state_dict()
        opt = state["optimizer"]
        for pid, pstate in opt["state"].items():
            for key, value in pstate.items():
                tensors[f"trainer.{pid}.{key}"] = torch.as_tensor(value).detach().contiguous()
        header["trainer"] = {
            "step": state["step"],
            "baseline": [None if math.isnan(x) else x for x in state["baseline"]],
            "param_groups": opt["param_groups"],
        }
    return write_blob(tensors, header)


def decode_checkpoint(blob: bytes) -> Checkpoint:
    """Parse :func:`encode_checkpoint` output; :class:`CheckpointError` if it is unusable."""
    tensors, header = read_blob(blob, "checkpoint")
    try:
        meta_data = header["meta"]
        fmt = int(meta_data.get("format", -1))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError("corrupt", f"not a hieramas checkpoint: {exc}") from exc
    if fmt != CHECKPOINT_FORMAT:
        raise CheckpointError(
            "format", f"checkpoint format {fmt}, this code reads {CHECKPOINT_FORMAT}"
        )
    try:
        meta = CheckpointMeta(**meta_data)
        SlotLayout.from_json(meta.layout)
    except (TypeError, KeyError, ValueError) as exc:
        raise CheckpointError("corrupt", f"bad checkpoint metadata: {exc}") from exc
    policy_state = {k[7:]: v for k, v in tensors.items() if k.startswith("policy.")}
    trainer_state = None
    if header.get("trainer") is not None:
        tr = header["trainer"]
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("trainer."):
                _, pid, name = key.split(".", 2)
                opt_state.setdefault(int(pid), {})[name] = value
        trainer_state = {
            "step": tr["step"],
            "baseline": [math.nan if x is None else x for x in tr["baseline"]],
            "optimizer": {"state": opt_state, "param_groups": tr["param_groups"]},
        }
    return Checkpoint(meta=meta, policy_state=policy_state, trainer_state=trainer_state)


def write_blob(tensors: Mapping[str, torch.Tensor], header: Mapping[str, Any]) -> bytes:
    """A checkpoint blob: safetensors of ``tensors`` with ``header`` as JSON in its metadata."""
    return st_save(dict(tensors), metadata={_META_KEY: json.dumps(header)})


def read_blob(blob: bytes, what: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and JSON header of :func:`write_blob` output; ``CheckpointError("corrupt")``
    (naming ``what``) for bytes that are not such a blob."""
    try:
        tensors = st_load(bytes(blob))
        header = json.loads(_read_metadata(blob)[_META_KEY])
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (SafetensorError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError("corrupt", f"not a hieramas {what}: {exc}") from exc
    return tensors, header


def _read_metadata(blob: bytes) -> Mapping[str, str]:
    # safetensors' header: 8-byte little-endian length, then JSON with "__metadata__"
    if len(blob) < 8:
        raise ValueError("too short")
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(bytes(blob[8 : 8 + n]))
    meta = header.get("__metadata__")
    if not isinstance(meta, dict):
        raise ValueError("no metadata")
    return meta


def layout_key(layout: SlotLayout) -> dict[str, Any]:
    """What must be equal for a checkpoint to serve a config: slots, actions, answerless roles,
    options (and the decision LLM when it is a slot)."""
    key = layout.to_json()
    if not layout.options.decision_slot:  # the config's own decision LLM is used then
        key.pop("default_decision")
    return key


def check_fits(
    what: str,
    layout: SlotLayout,
    needs_embedder: str,
    config: HieraConfig | None,
    embedder: str | None,
) -> None:
    """``CheckpointError("incompatible")`` unless ``config`` (if given) has ``layout`` under its
    options and ``embedder`` (if given) is ``needs_embedder``; ``what`` names the checkpoint."""
    if config is not None:
        mine = SlotLayout.from_config(config, options=layout.options)
        if layout_key(mine) != layout_key(layout):
            raise CheckpointError(
                "incompatible",
                f"{what} was trained for another layout ({_layout_diff(layout, mine)})",
            )
    if embedder is not None and embedder != needs_embedder:
        raise CheckpointError(
            "incompatible", f"{what} needs embedder {needs_embedder!r}, not {embedder!r}"
        )


def _layout_diff(theirs: SlotLayout, mine: SlotLayout) -> str:
    if theirs.actions != mine.actions:
        return f"LLMs {list(theirs.llms)} vs {list(mine.llms)}"
    if theirs.slots != mine.slots:
        return f"{len(theirs.slots)} slots vs {len(mine.slots)}, or other roles/positions"
    if theirs.answerless != mine.answerless:
        return f"answerless roles {sorted(theirs.answerless)} vs {sorted(mine.answerless)}"
    return "options or decision LLM differ"
