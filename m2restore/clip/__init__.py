"""CLIP degradation prior: a frozen CLIP that tells restoration models which degradations an image carries.

    build_prior(source, checkpoint=None, classes=None, **kw) -> DegradationPrior
        sources: tiny | tiny:PATH | openclip:ARCH:TAG | local:ARCH:PATH | daclip:PATH  (see prior.py)
    DegradationPrior(images in [0, 1]) -> PriorOutput(probs (B, K), image_embed (B, E), degra_embed (B, E) | None)
    train_prior(...) / evaluate_prior(...)    degradation-aware training and zero-shot evaluation (finetune.py)
    resolve_classes(...) / list_class_sets()  the prompt bank (prompts.yaml): default K=13, cdd11, release6, ...

Heavy imports (torch, open_clip) happen on first attribute access, so ``import m2restore.clip`` is instant.
"""
from __future__ import annotations

from typing import Any

_LAZY = {
    "PriorOutput": "m2restore.clip.prior",
    "DegradationPrior": "m2restore.clip.prior",
    "PretrainedUnavailableError": "m2restore.clip.prior",
    "build_prior": "m2restore.clip.prior",
    "load_prior_checkpoint": "m2restore.clip.prior",
    "ClassPrompts": "m2restore.clip.prompts",
    "resolve_classes": "m2restore.clip.prompts",
    "list_class_sets": "m2restore.clip.prompts",
    "canonical_name": "m2restore.clip.prompts",
    "register_tiny_clip": "m2restore.clip.tiny",
    "TINY_CLIP": "m2restore.clip.tiny",
    "TINY_CLIP_RN": "m2restore.clip.tiny",
    "load_daclip": "m2restore.clip.daclip",
    "TrainConfig": "m2restore.clip.finetune",
    "train_prior": "m2restore.clip.finetune",
    "evaluate_prior": "m2restore.clip.evaluate",
}

__all__ = [
    "TINY_CLIP",
    "TINY_CLIP_RN",
    "ClassPrompts",
    "DegradationPrior",
    "PretrainedUnavailableError",
    "PriorOutput",
    "TrainConfig",
    "build_prior",
    "canonical_name",
    "evaluate_prior",
    "list_class_sets",
    "load_daclip",
    "load_prior_checkpoint",
    "register_tiny_clip",
    "resolve_classes",
    "train_prior",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'm2restore.clip' has no attribute {name!r}")
