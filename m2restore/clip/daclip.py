"""DA-CLIP (Luo et al., "Controlling Vision-Language Models for Multi-Task Image Restoration", ICLR 2024).

DA-CLIP keeps a frozen CLIP and adds a trained *controller*: a copy of the image tower whose transformer
emits, after every block, a zero-initialised linear projection of its tokens. The controller's pooled output
is the **degradation embedding**; its per-block outputs are added to the frozen tower's blocks, whose pooled
output is the (degradation-corrected) **content embedding**. Module tree, matching the checkpoint keys of
``daclip_ViT-B-32.pt`` (``Algolzw/daclip-uir``, ``da-clip/src/open_clip/daclip_model.py``):

    DAClip
    ├── clip                    open_clip CLIP (ViT-B/32): clip.visual.*, clip.transformer.*, ...
    ├── visual                  the same module as clip.visual (so the file holds visual.* twice)
    ├── visual_control          a copy of the image tower
    │   └── transformer         ControlTransformer
    │       ├── transformer     the copied blocks: visual_control.transformer.transformer.resblocks.N.*
    │       └── zero_modules    N x Linear(width, width): visual_control.transformer.zero_modules.N.*
    └── logit_scale

Order detail of the release: the frozen tower's block i receives the controller's output of block
L-1-i (the release pops from the end of the list). We reproduce it; ``reverse_control=False`` gives the
in-order variant.

Architecture sizes are read from the file's own keys (widths, layers, patch and image size, context length),
so reduced-width test checkpoints load like the real one.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from copy import deepcopy
from pathlib import Path
from typing import Any

import torch
from torch import nn

DACLIP_URL = "https://huggingface.co/weblzw/daclip-uir-ViT-B-32-irsde/blob/main/daclip_ViT-B-32.pt"


class ControlTransformer(nn.Module):
    """The controller's transformer: the copied blocks plus one zero-initialised projection per block."""

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.transformer = transformer
        width = transformer.width
        self.zero_modules = nn.ModuleList(nn.Linear(width, width) for _ in transformer.resblocks)
        for p in self.zero_modules.parameters():
            nn.init.zeros_(p)


def _run_tower(visual: nn.Module, blocks: nn.ModuleList, x: torch.Tensor, add: list[torch.Tensor] | None,
               taps: nn.ModuleList | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run an open_clip ViT tower block by block, adding ``add[i]`` after block i and tapping outputs."""
    x = visual._embeds(x)  # (B, 1 + N, W)
    tapped = []
    for i, block in enumerate(blocks):
        x = block(x)  # (B, 1 + N, W)
        if taps is not None:
            tapped.append(taps[i](x))  # (B, 1 + N, W)
        if add is not None:
            x = x + add[i]  # (B, 1 + N, W)
    pooled, _ = visual._pool(x)  # (B, W)
    if visual.proj is not None:
        pooled = pooled @ visual.proj  # (B, E)
    return pooled, tapped


def controlled_forward(visual: nn.Module, visual_control: nn.Module, image: torch.Tensor,
                       reverse_control: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """DA-CLIP's image pass: the controller's embedding, and the frozen tower's embedding under its control.

    Args:
        visual: the frozen open_clip ViT tower.
        visual_control: the controller (a ViT tower whose ``transformer`` is a ``ControlTransformer``).
        image: (B, 3, S, S) normalised with CLIP's mean/std.
        reverse_control: see ``DAClip``.

    Returns:
        (B, E) content embedding, (B, E) degradation embedding.
    """
    control = visual_control.transformer
    degra, hiddens = _run_tower(visual_control, control.transformer.resblocks, image, None, control.zero_modules)
    if reverse_control:
        hiddens = hiddens[::-1]
    content, _ = _run_tower(visual, visual.transformer.resblocks, image, hiddens, None)
    return content, degra


class DAClip(nn.Module):
    """DA-CLIP around an open_clip CLIP; ``encode_image`` returns (content, degradation) embeddings.

    Args:
        clip: the base open_clip CLIP (weights are loaded afterwards with ``load_state_dict``).
        reverse_control: feed controller block L-1-i to frozen block i, as the release does.
    """

    def __init__(self, clip: nn.Module, reverse_control: bool = True) -> None:
        super().__init__()
        self.clip = clip
        self.visual = clip.visual
        self.visual_control = deepcopy(clip.visual)
        self.visual_control.transformer = ControlTransformer(self.visual_control.transformer)
        self.logit_scale = deepcopy(clip.logit_scale)
        self.reverse_control = reverse_control

    def encode_image(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Content and degradation embeddings (not normalised) of CLIP-preprocessed (B, 3, S, S) images."""
        return controlled_forward(self.clip.visual, self.visual_control, image, self.reverse_control)

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Text embedding of the frozen CLIP."""
        return self.clip.encode_text(text, normalize=normalize)


class DAClipImageEncoder(nn.Module):
    """The image side of DA-CLIP only (for the prior): returns (content, degradation) embeddings."""

    def __init__(self, daclip: DAClip) -> None:
        super().__init__()
        self.visual = daclip.clip.visual
        self.visual_control = daclip.visual_control
        self.reverse_control = daclip.reverse_control

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return controlled_forward(self.visual, self.visual_control, image, self.reverse_control)


# --------------------------------------------------------------------------------------------------------------
# Loading from the file's own keys
# --------------------------------------------------------------------------------------------------------------

def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a DA-CLIP checkpoint: a training checkpoint (``state_dict`` inside) or a bare state dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"DA-CLIP checkpoint not found: {path}. Download daclip_ViT-B-32.pt (about 1.6 GB) from {DACLIP_URL} "
            f"on a machine with network, copy it here, and use the source 'daclip:{path}'."
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # mmap: skip optimizer state reads
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, Mapping) or not any(k.startswith(("clip.", "module.clip.")) for k in state):
        raise ValueError(f"{path} is not a DA-CLIP checkpoint: expected keys 'clip.*' and 'visual_control.*'")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _count_blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for k in state if (m := pattern.match(k))})


def config_from_state_dict(state: Mapping[str, torch.Tensor], quick_gelu: bool = False) -> dict[str, Any]:
    """Infer an open_clip model config from a DA-CLIP state dict (heads = width / 64, as in OpenAI CLIP).

    Args:
        state: DA-CLIP keys (``clip.visual.conv1.weight``, ...), without a ``module.`` prefix.
        quick_gelu: the activation is not visible in the weights; DA-CLIP was fine-tuned from
            ``laion2b_s34b_b79k`` which uses plain GELU.

    Returns:
        ``{"embed_dim", "quick_gelu", "vision_cfg", "text_cfg"}``.
    """
    conv = state["clip.visual.conv1.weight"]  # (W, 3, P, P)
    width, patch = conv.shape[0], conv.shape[-1]
    grid = round((state["clip.visual.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = state["clip.ln_final.weight"].shape[0]
    return {
        "embed_dim": state["clip.visual.proj"].shape[1],
        "quick_gelu": quick_gelu,
        "vision_cfg": {
            "image_size": grid * patch,
            "patch_size": patch,
            "width": width,
            "head_width": 64,
            "layers": _count_blocks(state, "clip.visual.transformer.resblocks."),
            "mlp_ratio": state["clip.visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width,
        },
        "text_cfg": {
            "context_length": state["clip.positional_embedding"].shape[0],
            "vocab_size": state["clip.token_embedding.weight"].shape[0],
            "width": text_width,
            "heads": max(1, text_width // 64),
            "layers": _count_blocks(state, "clip.transformer.resblocks."),
        },
    }


def load_daclip(path: str | Path, quick_gelu: bool = False, reverse_control: bool = True) -> tuple[DAClip, dict]:
    """Build DA-CLIP from a checkpoint file, sized by its keys.

    Args:
        path: ``daclip_ViT-B-32.pt`` (or a reduced-size file with the same key structure).
        quick_gelu: see ``config_from_state_dict``.
        reverse_control: see ``DAClip``.

    Returns:
        The model (eval mode) and its open_clip config.
    """
    from .tiny import build_clip

    state = read_state_dict(path)
    cfg = config_from_state_dict(state, quick_gelu=quick_gelu)
    model = DAClip(build_clip(cfg), reverse_control=reverse_control)
    for key, value in list(state.items()):  # the file may omit the shared alias visual.* = clip.visual.*
        if key.startswith("clip.visual."):
            state.setdefault(key.removeprefix("clip."), value)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: keys do not match DA-CLIP's structure ({len(missing)} missing, e.g. "
                         f"{missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]}). Is it the "
                         f"daclip_ViT-B-32.pt of {DACLIP_URL}?")
    return model.eval(), cfg
