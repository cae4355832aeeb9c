"""Load the authors' released weights into our models.

The official PromptIR and AdaIR checkpoints come in two formats, both read here with ``weights_only=True``
(tensors and plain containers only, never arbitrary pickled code):

- a plain ``state_dict`` (``{"patch_embed.proj.weight": ..., ...}``), possibly with a DataParallel ``module.``
  prefix;
- a PyTorch Lightning ``.ckpt``: ``{"state_dict": {"net.patch_embed.proj.weight": ...}, "epoch": ..., ...}``,
  where ``net`` is the attribute of the training LightningModule that holds the network.

Our module and parameter names equal the official ones, so after stripping the wrapper prefix the weights load
with ``strict=True``; any missing or unexpected key is an error that names the file and the keys.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

# wrapper prefixes, stripped when every key carries one (Lightning's ``net.``, DataParallel's ``module.``)
PREFIXES = ("net.", "module.")
# containers that hold the weights in common checkpoint layouts (Lightning, BasicSR, our trainer)
CONTAINER_KEYS = ("state_dict", "params_ema", "params", "model")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Tensors of a plain state dict or a Lightning/BasicSR checkpoint at ``path``, wrapper prefixes removed."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, ModuleNotFoundError) as e:
        raise CheckpointError(
            f"{p}: cannot be read with torch.load(weights_only=True): {e}. The file holds objects other than tensors "
            "and plain containers; if you trust it, re-save only its state_dict: "
            "torch.save(torch.load(path, weights_only=False)['state_dict'], 'weights.pth')"
        ) from None
    state = obj
    while isinstance(state, Mapping) and not _is_tensor_dict(state):
        key = next((k for k in CONTAINER_KEYS if isinstance(state.get(k), Mapping)), None)
        if key is None:
            raise CheckpointError(
                f"{p}: no tensor state dict found; top-level keys are {sorted(map(str, state))[:12]} "
                f"(expected a plain state dict or one under {list(CONTAINER_KEYS)})"
            )
        state = state[key]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{p}: expected a state dict, found {type(obj).__name__}")
    return strip_prefixes(dict(state))


def _is_tensor_dict(d: Mapping) -> bool:
    return bool(d) and all(isinstance(v, Tensor) for v in d.values())


def strip_prefixes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Remove a wrapper prefix (``net.``, ``module.``) that every key carries, repeatedly (``net.module.``)."""
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def load_official_checkpoint(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load released weights (plain state dict or Lightning ``.ckpt``) into ``model`` in place and return it.

    Args:
        model: a model with the official names, e.g. ``build_model('promptir')``.
        path: the checkpoint file.
        strict: require exactly the model's keys (the default; the released files match the default presets).

    Raises:
        CheckpointError: unreadable file, or missing / unexpected keys or wrong shapes, listed by name.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if wrong or (strict and (missing or unexpected)):
        name = type(model).__name__
        preset = getattr(model, "preset_name", None)
        lines = [f"{path}: does not fit {name}" + (f" (preset '{preset}')" if preset else "") + ":"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}, under {_modules(missing)}): {_head(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}, under {_modules(unexpected)}): {_head(unexpected)}")
        if wrong:
            shapes = [f"{k} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong]
            lines.append(f"  shape mismatches ({len(wrong)}): {_head(shapes)}")
        lines.append("  The released weights fit the default presets ('promptir', 'adair') with their default options "
                     "(e.g. unused layers kept); pass strict=False only to load a partial checkpoint on purpose.")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state, strict=strict)
    return model


def _modules(keys: list[str]) -> str:
    """Top-level module names of ``keys``, e.g. 'fre1, fre2, fre3'."""
    return ", ".join(sorted({k.split(".")[0] for k in keys}))


def _head(items: list[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n} more)" if len(items) > n else "")
