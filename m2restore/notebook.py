"""The set-up every notebook of ``notebooks/`` shares, in one place (fastbook's ``setup_book``).

A notebook's first code cell after its parameters calls :func:`setup`, which resolves and creates the output folder,
refuses a CUDA device that is not there and seeds torch. Notebooks that train on the demo data use
:func:`resolve_data` and :func:`resolve_prior`; those that read the optional ``shared/`` folder beside the checkout
use :func:`shared_data`, and :func:`centre_square` frames their photographs. Each resolver tries, in order, what the
user passed, what ``make demo`` built, and a small thing built here offline, so that every notebook also runs
without ``make demo`` and without ``shared/``::

    out_dir = setup("07_training", out_dir, device, seed)
    root = resolve_data(data_root, out_dir, smoke, dataset)
    prior_path = resolve_prior(prior_checkpoint, root, out_dir, smoke, prior_minutes, model=model)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]  # the checkout when installed editable (it holds notebooks/ and data/)
SMOKE_MINI = {"size": 64, "n_train": 2, "n_test": 1}  # make_mini_cdd11 arguments of the smoke-mode dataset


def setup(name: str, out_dir: str | Path = "", device: str = "cpu", seed: int = 0) -> Path:
    """Resolve and create a notebook's output folder, check the device and seed torch.

    Args:
        name: the notebook's stem, e.g. ``"07_training"``; names the default output folder.
        out_dir: the ``out_dir`` parameter; empty for ``<checkout>/notebooks/_outputs/<name>`` (or
            ``./_outputs/<name>`` when the package is not installed from a checkout).
        device: the ``device`` parameter; a ``cuda`` device must be available.
        seed: seed of torch's global generators.

    Returns:
        The output folder, created.

    Raises:
        RuntimeError: ``device`` is a CUDA device and CUDA is not available.
    """
    if out_dir:
        folder = Path(out_dir)
    elif (ROOT / "notebooks").is_dir():
        folder = ROOT / "notebooks" / "_outputs" / name
    else:
        folder = Path("_outputs") / name
    folder.mkdir(parents=True, exist_ok=True)
    check_device(device)
    torch.manual_seed(seed)
    return folder


def check_device(device: str) -> None:
    """Raise a clear error for a CUDA ``device`` (``"cuda"``, ``"cuda:1"``) on a machine without CUDA."""
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={str(device)!r} but CUDA is not available here. Fix: run with device='cpu'.")


def shared_data(name: str, given: str | Path = "", hint: str = "pass a folder, or leave it empty") -> Path | None:
    """A folder of the optional ``shared/data`` beside the checkout, or the one the user passed.

    Args:
        name: the sub-folder of ``shared/data`` (``"clean"``, ``"real_pairs"``); the parameter is ``<name>_dir``.
        given: the ``<name>_dir`` parameter; when set it must be a folder.
        hint: what the error message suggests when ``given`` is not a folder.

    Returns:
        ``given``; else ``shared/data/<name>`` seen from the working directory (``../../shared/data`` from
        ``notebooks/``) or beside the checkout, if one exists; else None (the notebook skips or falls back).

    Raises:
        FileNotFoundError: ``given`` is set but is not a folder.
    """
    if given:
        if not Path(given).is_dir():
            raise FileNotFoundError(f"{name}_dir={str(given)!r} is not a folder. Fix: {hint}.")
        return Path(given)
    candidates = [Path("../../shared/data") / name, ROOT.parent / "shared" / "data" / name]
    return next((p for p in candidates if p.is_dir()), None)


def resolve_data(data_root: str | Path, out_dir: Path, smoke: bool, dataset: str = "mini-cdd11") -> Path:
    """The dataset folder a notebook trains and evaluates on.

    Args:
        data_root: the ``data_root`` parameter; used as given when set.
        out_dir: the notebook's output folder; a mini CDD-11 built here goes to ``out_dir/mini-cdd11``.
        smoke: smoke mode builds a tiny mini CDD-11 (:data:`SMOKE_MINI`) and ignores ``make demo``'s.
        dataset: the ``dataset`` parameter; datasets other than ``mini-cdd11`` need ``data_root``.

    Returns:
        ``data_root``; else the mini CDD-11 that ``make demo`` builds (``<checkout>/data/mini-cdd11``) outside smoke
        mode; else a mini CDD-11 built offline from scikit-image's photographs (reused when already built).

    Raises:
        ValueError: ``dataset`` is not ``mini-cdd11`` and no ``data_root`` was given.
    """
    if data_root:
        return Path(data_root)
    if dataset != "mini-cdd11":
        raise ValueError(f"dataset '{dataset}' needs data_root. Fix: pass data_root=PATH, or use dataset='mini-cdd11'.")
    demo = ROOT / "data" / "mini-cdd11"
    if not smoke and (demo / "mini_info.json").is_file():
        return demo
    from .data import make_mini_cdd11

    return make_mini_cdd11(out_dir / "mini-cdd11", **(SMOKE_MINI if smoke else {}))


def resolve_prior(
    prior_checkpoint: str | Path, data: Path, out_dir: Path, smoke: bool, minutes: float, model: str | None = None,
) -> Path | None:
    """The tiny CLIP prior checkpoint a notebook's M2Restore reads (notebook 04 explains the prior).

    Args:
        prior_checkpoint: the ``prior_checkpoint`` parameter; used as given when set.
        data: the dataset folder a new prior trains on.
        out_dir: the notebook's output folder; a prior trained here goes to ``out_dir/clip-prior`` (and is reused).
        smoke: smoke mode never trains one: the untrained prior runs the same code, with meaningless routing.
        minutes: wall-clock budget of a prior trained here.
        model: a preset name; when given and its config has no tiny CLIP prior, no prior is needed (None).

    Returns:
        ``prior_checkpoint``; else the prior ``make demo`` trains (``<checkout>/data/clip-prior-tiny/prior.pt``);
        else None in smoke mode; else a prior trained here for ``minutes``.
    """
    if model is not None:
        from .registry import get_config

        cfg = get_config(model)
        if not (getattr(cfg, "use_clip_prior", False) and getattr(cfg, "prior", "") == "tiny"):
            return None
    demo = ROOT / "data" / "clip-prior-tiny" / "prior.pt"
    if prior_checkpoint:
        return Path(prior_checkpoint)
    if demo.is_file():
        return demo
    if smoke:
        return None
    from .bench.demo import train_tiny_prior

    path, summary = train_tiny_prior(data, out_dir / "clip-prior", minutes, torch.get_num_threads())
    print(f"trained the tiny CLIP prior: {summary.get('steps')} steps, test accuracy "
          f"{summary.get('eval', {}).get('accuracy', float('nan')):.1%}")
    return path


def centre_square(photo: np.ndarray, side: int) -> np.ndarray:
    """The centre square of an RGB photograph, resized to ``side`` px (Lanczos) on 8-bit levels.

    Args:
        photo: (H, W, 3) float RGB in [0, 1].
        side: output side in pixels.

    Returns:
        (side, side, 3) float32 RGB in [0, 1], rounded to 8-bit levels (what a saved PNG holds).
    """
    h, w = photo.shape[:2]
    s = min(h, w)
    crop = photo[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]  # (s, s, 3)
    img = Image.fromarray((np.clip(crop, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((side, side), Image.LANCZOS)
    return np.asarray(img, dtype=np.float32) / 255.0  # (side, side, 3)
