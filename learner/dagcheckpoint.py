"""Versioned Stage-2 classifier checkpoints as bytes (safetensors + JSON metadata).

The same shape as Stage 1's :mod:`.checkpoint`: one safetensors blob of the net's
tensors (``classifier.*``) and a JSON header (:class:`ClassifierMeta`: kind, format,
version and parent, the config and slot layout it was trained for, the embedder, the
net's and the trainer's hyper-parameters, validation metrics, seed, creation time).
Errors are Stage 1's :class:`~hieramas.learner.checkpoint.CheckpointError` codes
(``corrupt``, ``format``, ``incompatible``), so one store can carry both kinds.
safetensors holds no code: loading a blob from the bus executes nothing.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from hieramas.controller.config import HieraConfig
from hieramas.learner.checkpoint import CheckpointError, check_fits, read_blob, write_blob
from hieramas.learner.classifier import DagClassifierNet
from hieramas.learner.slots import SlotLayout

__all__ = [
    "CLASSIFIER_FORMAT",
    "CLASSIFIER_KIND",
    "ClassifierCheckpoint",
    "ClassifierMeta",
    "decode_classifier",
    "encode_classifier",
]

CLASSIFIER_FORMAT = 1
CLASSIFIER_KIND = "dag-classifier"
_PREFIX = "classifier."


@dataclass(frozen=True, slots=True)
class ClassifierMeta:
    """What a classifier checkpoint is (see the module docstring)."""

    version: int
    parent: int | None
    config_name: str
    config_version: int
    layout: dict[str, Any]
    embedder: str
    dim: int
    seed: int
    net: dict[str, Any] = field(default_factory=dict)
    """:meth:`DagClassifierNet.hyper`: what rebuilds the net."""
    train: dict[str, Any] = field(default_factory=dict)
    """The training configuration (loss, lr, ...)."""
    metrics: dict[str, float] = field(default_factory=dict)
    policy_version: int | None = None
    """The frozen Stage-1 policy version whose assignments the data was generated with."""
    created_unix: float = 0.0
    kind: str = CLASSIFIER_KIND
    format: int = CLASSIFIER_FORMAT


@dataclass(frozen=True, slots=True)
class ClassifierCheckpoint:
    """A decoded classifier checkpoint."""

    meta: ClassifierMeta
    state: dict[str, torch.Tensor]

    def layout(self) -> SlotLayout:
        return SlotLayout.from_json(self.meta.layout)

    def net(
        self, *, config: HieraConfig | None = None, embedder: str | None = None
    ) -> DagClassifierNet:
        """Rebuild the classifier (eval mode, no gradients).  With ``config`` its layout must
        match, with ``embedder`` its name; otherwise ``CheckpointError("incompatible")``."""
        layout = self.layout()
        check_fits(f"classifier v{self.meta.version}", layout, self.meta.embedder, config, embedder)
        try:
            net = DagClassifierNet(layout, self.meta.dim, **self.meta.net)
            net.load_state_dict(self.state)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError("corrupt", f"classifier tensors do not fit: {exc}") from exc
        net.eval().requires_grad_(False)
        return net


def encode_classifier(net: DagClassifierNet, meta: ClassifierMeta) -> bytes:
    """Serialise ``net`` with ``meta`` (layout, dim and net hyper-parameters are checked
    against the net; ``created_unix`` of 0 becomes now)."""
    if meta.layout != net.layout.to_json():
        raise ValueError("meta.layout is not the classifier's layout")
    if meta.dim != net.dim or meta.net != net.hyper():
        raise ValueError("meta.dim/net do not match the classifier")
    if not meta.created_unix:
        meta = replace(meta, created_unix=time.time())
    tensors = {f"{_PREFIX}{k}": v.detach().contiguous() for k, v in net.state_dict().items()}
    return write_blob(tensors, {"meta": asdict(meta)})


def decode_classifier(blob: bytes) -> ClassifierCheckpoint:
    """Parse :func:`encode_classifier` output; :class:`CheckpointError` if unusable."""
    tensors, header = read_blob(blob, "classifier checkpoint")
    try:
        data = header["meta"]
        kind, fmt = data.get("kind"), int(data.get("format", -1))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError("corrupt", f"not a hieramas classifier checkpoint: {exc}") from exc
    if kind != CLASSIFIER_KIND:
        raise CheckpointError("format", f"a {kind!r} checkpoint, not a {CLASSIFIER_KIND!r}")
    if fmt != CLASSIFIER_FORMAT:
        raise CheckpointError(
            "format", f"classifier format {fmt}, this code reads {CLASSIFIER_FORMAT}"
        )
    try:
        meta = ClassifierMeta(**data)
        SlotLayout.from_json(meta.layout)
    except (TypeError, KeyError, ValueError) as exc:
        raise CheckpointError("corrupt", f"bad classifier metadata: {exc}") from exc
    state = {k[len(_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_PREFIX)}
    return ClassifierCheckpoint(meta, state)
