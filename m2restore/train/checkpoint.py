"""Self-describing, atomically written checkpoints, exact resume, and loading a model for evaluation.

A checkpoint is one ``torch.save`` file (loadable with ``weights_only=True``) holding::

    format, version      "m2restore-checkpoint", 1
    model_name           registered preset, e.g. "adair_tiny"
    model_config         the resolved model config (a plain dict of the preset's dataclass)
    model, ema           state dicts (ema is None without EMA)
    optimizer, scheduler state dicts (absent in weights-only files such as best.pt)
    step, epoch          optimizer steps done, epochs started
    best_metric, best_step
    rng                  per process: python / numpy / torch (CPU and every CUDA device) generator states
    config               the resolved experiment config (dict)
    train_protocol       steps, epochs, effective batch, precision, seed, hardware of the run (written by Trainer)

so that ``m2restore test --checkpoint FILE`` rebuilds the model without being told which, and ``resume='auto'``
continues a run bit-for-bit on the CPU (see ``tests/test_train.py::test_resume_is_exact``).
"""
from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models.checkpoints import CheckpointError  # one error type for every checkpoint problem

FORMAT = "m2restore-checkpoint"
VERSION = 1
LAST = "last.pt"  # full state, rewritten at every save
BEST = "best.pt"  # weights (+ EMA) of the best validation score


# ---------------------------------------------------------------------------------------------------------------------
# RNG state
# ---------------------------------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Every global generator's state as tensors and plain values (``weights_only``-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only when the device count matches)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# ---------------------------------------------------------------------------------------------------------------------
# Saving and reading
# ---------------------------------------------------------------------------------------------------------------------
def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace`` (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def make_checkpoint(
    *, model_name: str, model_config: dict[str, Any], model_state: dict[str, torch.Tensor],
    ema_state: dict[str, torch.Tensor] | None = None, optimizer: dict[str, Any] | None = None,
    scheduler: dict[str, Any] | None = None, step: int = 0, epoch: int = 0, best_metric: float | None = None,
    best_step: int | None = None, config: dict[str, Any] | None = None, rng: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Assemble a checkpoint dict (see the module docstring); ``optimizer=None`` makes a weights-only file.

    ``rng`` holds one :func:`rng_state` per process (rank order); None stores none.
    """
    ckpt: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "model_name": model_name, "model_config": model_config,
        "model": model_state, "ema": ema_state, "step": step, "epoch": epoch, "best_metric": best_metric,
        "best_step": best_step, "config": config or {},
    }
    if optimizer is not None:
        ckpt["optimizer"] = optimizer
        ckpt["scheduler"] = scheduler
    if rng is not None:
        ckpt["rng"] = rng
    return ckpt


_OFFICIAL_HINT = "For an official PromptIR/AdaIR checkpoint pass --model (e.g. --model promptir or --model adair)."


def _torch_load(path: Path, map_location: Any) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(
            f"{path} is not an m2restore checkpoint (torch.load with weights_only=True: {type(e).__name__}). "
            f"{_OFFICIAL_HINT}"
        ) from e


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load an m2restore checkpoint; a clear :class:`CheckpointError` names the file and the fix otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    ckpt = _torch_load(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an m2restore checkpoint. {_OFFICIAL_HINT}")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt['version']} is newer than this code ({VERSION})")
    return ckpt


def find_resume(resume: str | None, run_dir: str | os.PathLike) -> Path | None:
    """Resolve ``resume``: None -> None; 'auto' -> ``run_dir/checkpoints/last.pt`` if it exists; else the path."""
    if not resume:
        return None
    if resume == "auto":
        last = Path(run_dir) / "checkpoints" / LAST
        return last if last.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise CheckpointError(f"--resume {resume}: no such checkpoint file (use 'auto' to resume the run folder)")
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Models from checkpoints
# ---------------------------------------------------------------------------------------------------------------------
def model_from_checkpoint(ckpt: dict[str, Any], weights: str = "auto") -> tuple[nn.Module, str]:
    """Rebuild the registered model an m2restore checkpoint describes and load its weights.

    Args:
        ckpt: a dict from :func:`read_checkpoint`.
        weights: 'ema', 'model', or 'auto' (EMA when the checkpoint has it).

    Returns:
        ``(model, which)`` with ``which`` the weights actually loaded ('ema' or 'model').
    """
    from ..config import from_dict
    from ..registry import build_from_config, get_preset

    name = ckpt["model_name"]
    cfg = from_dict(get_preset(name).config_cls, ckpt["model_config"], where=f"checkpoint model_config ({name})")
    model = build_from_config(name, cfg)
    if weights not in ("auto", "ema", "model"):
        raise ValueError(f"weights must be 'auto', 'ema' or 'model', got {weights!r}")
    which = "ema" if weights == "ema" or (weights == "auto" and ckpt.get("ema") is not None) else "model"
    state = ckpt.get(which)
    if state is None:
        raise CheckpointError(f"the checkpoint holds no '{which}' weights (it was trained without EMA)")
    model.load_state_dict(state, strict=True)
    return model, which


def load_model(
    path: str | os.PathLike, model_name: str | None = None, weights: str = "auto",
    device: torch.device | str = "cpu", **overrides: Any,
) -> tuple[nn.Module, dict[str, Any]]:
    """Model ready for inference (eval mode, on ``device``) from an m2restore or an official checkpoint.

    Args:
        path: an m2restore checkpoint (self-describing), or an official PromptIR/AdaIR state dict / Lightning ``.ckpt``.
        model_name: preset to build; required for official checkpoints, checked against ours.
        weights: for m2restore checkpoints: 'auto' (EMA when present), 'ema' or 'model'.
        device: where to put the model.
        **overrides: model config overrides for official checkpoints (ours carry their config).

    Returns:
        ``(model, info)``; ``info`` has model, checkpoint, kind ('m2restore' or 'official'), weights, step, seed and
        train (the run's recipe facts, m2restore checkpoints only).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt: dict[str, Any] | None = read_checkpoint(path)
    except CheckpointError:
        if model_name is None:
            raise
        ckpt = None
    if ckpt is not None:
        if model_name is not None and model_name != ckpt["model_name"]:
            raise CheckpointError(f"{path} holds model '{ckpt['model_name']}', not '{model_name}'; drop --model")
        model, which = model_from_checkpoint(ckpt, weights)
        info = {"model": ckpt["model_name"], "kind": "m2restore", "step": ckpt.get("step"), "weights": which,
                "seed": ckpt.get("config", {}).get("seed"), "train": ckpt.get("train_protocol")}
    else:
        from ..models.checkpoints import load_official_checkpoint
        from ..registry import build_model

        model = build_model(model_name, **overrides)
        load_official_checkpoint(model, path)
        info = {"model": model_name, "kind": "official", "step": None, "weights": "official", "seed": None,
                "train": None}
    info["checkpoint"] = str(path)
    return model.to(device).eval(), info
