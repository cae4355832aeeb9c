"""What every restoration model in the zoo shares: the output structure and input padding.

Models are called as ``model(x)`` and return the restored image. Training and the notebooks call
``model(x, return_aux=True)`` and get a :class:`RestorationOutput`: the image, the auxiliary losses to add to the
reconstruction loss (already multiplied by their weights, e.g. M2Restore's 0.01 x load balance) and free-form
extras (routing statistics, gate maps) for plots. Baselines return empty dicts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class RestorationOutput:
    """Result of ``model(x, return_aux=True)``."""

    image: Tensor  # (B, 3, H, W) restored image, same size as the input
    aux_losses: dict[str, Tensor] = field(default_factory=dict)  # weighted scalars; the trainer sums them
    extras: dict[str, Any] = field(default_factory=dict)  # detached statistics / maps for analysis


def pad_to_multiple(x: Tensor, multiple: int, mode: str = "reflect") -> tuple[Tensor, tuple[int, int]]:
    """Pad (B, C, H, W) on the bottom/right so H and W are multiples of ``multiple``; return padded and (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        # reflect needs pad < size; fall back to replicate for tiny inputs
        m = mode if (mode != "reflect" or (ph < h and pw < w)) else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=m)  # (B, C, H+ph, W+pw)
    return x, (h, w)


def count_parameters(model: torch.nn.Module, trainable: bool | None = True) -> int:
    """Number of parameters: trainable only (True), frozen only (False) or all (None)."""
    return sum(p.numel() for p in model.parameters() if trainable is None or p.requires_grad == trainable)
