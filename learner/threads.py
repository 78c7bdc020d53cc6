"""CPU thread settings for torch in HieraMAS processes.

The policy's forward pass is tiny (tens of slots, a dozen actions): splitting it
over threads buys nothing, and on a shared 2-core machine torch's worker threads
wait for a busy core, so a 0.4 ms decision takes 5 ms on average (measured:
``bench/embeddings.py``).  A process that plans (the controller) should run torch
on one thread; the learner may give the embedding model more.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["set_torch_threads"]


def set_torch_threads(intra_op: int = 1) -> None:
    """Use ``intra_op`` threads for torch's CPU kernels (process-wide), and one
    inter-op thread when that can still be set (only before torch's first parallel work)."""
    torch.set_num_threads(max(1, intra_op))
    with contextlib.suppress(RuntimeError):  # already started: keep whatever it has
        torch.set_num_interop_threads(1)
