"""HieraMAS: a distributed runtime and optimizer for hierarchical multi-LLM agent systems."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
