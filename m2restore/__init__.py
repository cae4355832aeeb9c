"""M2Restore suite: all-in-one image restoration with M2Restore, PromptIR and AdaIR.

Heavy modules load on first use so that ``import m2restore`` and the CLI start fast.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "build_model": "m2restore.registry",
    "build_from_config": "m2restore.registry",
    "list_models": "m2restore.registry",
    "get_config": "m2restore.registry",
    "get_preset": "m2restore.registry",
    "RestorationOutput": "m2restore.models.base",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'm2restore' has no attribute {name!r}")
