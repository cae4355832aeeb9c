"""The tiny CLIP architectures for CPU work, registered with open_clip, and config-driven model building.

Two ordinary open_clip ``CLIP`` configs (``model_configs/*.json``) share the text tower and joint space:

    m2r-tiny-clip     visual ViT, 128 px input, 16 px patches (8x8 = 64 tokens), width 128, 4 layers, 4 heads of 32
    m2r-tiny-clip-rn  visual ModifiedResNet (CLIP's RN50 design), 128 px, width 16, one bottleneck per stage
                      (64-512 channels), attention pooling with 8 heads; open_clip builds it because
                      ``vision_cfg.layers`` is a list
    text              causal transformer, context 32 (our captions are < 20 tokens), width 64, 2 layers, 2 heads
    embed             128-d joint space

``m2r-tiny-clip-rn`` is what ``m2restore clip train`` trains by default: on CPU it reaches a given zero-shot
accuracy several times sooner than the ViT (measured in ``m2restore/clip/README.md``); convolutions see thin
streaks and flakes from the first step, a ViT from scratch has to learn that locality from few images.
``build_prior("tiny")`` (random weights: tests, shapes) keeps the ViT.

Why these numbers: the prior must train from scratch on CPU in minutes and run beside a restoration model
at every step. 128 px is the mini CDD-11 image size, so the prior sees degradations at native scale
(downscaling erases rain streaks and snow flakes). The text tower only has to place ~13 classes apart, so
it is smaller than the image tower; its 49,408 x 64 token table is most of its weights.

After ``register_tiny_clip()`` (called by ``build_prior``), ``open_clip.create_model("m2r-tiny-clip")`` works
offline like any built-in architecture. ``build_clip`` builds any architecture from a config dict, so a
checkpoint that stores its config needs no registration.
"""
from __future__ import annotations

from collections.abc import Mapping
from copy import deepcopy
from pathlib import Path
from typing import Any

import torch

TINY_CLIP = "m2r-tiny-clip"
TINY_CLIP_RN = "m2r-tiny-clip-rn"
CONFIG_DIR = Path(__file__).with_name("model_configs")
_registered = False


def register_tiny_clip() -> list[str]:
    """Add our ``model_configs`` folder to open_clip's registry (idempotent).

    Returns:
        The architecture names the folder provides.
    """
    global _registered
    import open_clip

    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def apply_overrides(cfg: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a copy of an open_clip model config with dotted overrides applied.

    Args:
        cfg: ``{"embed_dim": .., "vision_cfg": {..}, "text_cfg": {..}}``.
        overrides: e.g. ``{"vision_cfg.patch_size": 8, "embed_dim": 64}``; unknown top-level sections raise.

    Returns:
        The new config.
    """
    out = deepcopy(dict(cfg))
    for key, value in (overrides or {}).items():
        *path, leaf = key.split(".")
        node = out
        for part in path:
            if not isinstance(node.get(part), dict):
                raise KeyError(f"model config override '{key}': '{part}' is not a section of the config")
            node = node[part]
        node[leaf] = value
    return out


def model_config(name: str = TINY_CLIP, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config of a registered open_clip architecture (ours included), with dotted overrides."""
    import open_clip

    register_tiny_clip()
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise KeyError(f"unknown open_clip architecture '{name}'; ours: {register_tiny_clip()}, "
                       f"built-ins: see open_clip.list_models()")
    return apply_overrides(cfg, overrides)


def build_clip(cfg: Mapping[str, Any], seed: int | None = None) -> torch.nn.Module:
    """Instantiate an open_clip ``CLIP`` (random weights) from a config dict.

    Args:
        cfg: an open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``, optional ``quick_gelu``).
        seed: seeds the initialisation when given.

    Returns:
        The model in fp32 on CPU.
    """
    import open_clip

    cfg = deepcopy(dict(cfg))
    if cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {}):
        raise ValueError("build_clip supports the plain CLIP class only (no HF text towers)")
    if seed is None:
        return open_clip.CLIP(**cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return open_clip.CLIP(**cfg)


def tokenizer_for(cfg: Mapping[str, Any]) -> Any:
    """open_clip's BPE tokenizer padded to the config's text context length (works offline)."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=int(cfg["text_cfg"].get("context_length", 77)))
