"""How realistic is the synthesis? Input PSNR/SSIM of synthetic data against its clean images, beside real data.

Two measurements, used by the data notebook and ``data_scripts/measure_realism.py``:

- :func:`dataset_input_quality` of a (mini) CDD-11 test set per type, to set beside the real CDD-11 test set's
  11-type mean input quality, **16.00 dB / 0.601** (OneRestore's "Input" row, :data:`CDD11_INPUT_REFERENCE`).
- :func:`real_pairs_comparison`: for real pairs (rain, haze, raindrop, low light), the input PSNR of the real
  degraded image and of our synthesis applied to the same clean target, over several seeds.

Metrics follow OneRestore's ``cal_psnr_ssim.py``: ``skimage.metrics`` on RGB, data range 1, SSIM with its default
7x7 uniform window.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from .datasets import CDD11, PairedDataset, PairedFolder
from .degrade import DEGRADATION_TYPES, degrade
from .io import read_image

__all__ = [
    "CDD11_INPUT_REFERENCE",
    "REAL_PAIR_KINDS",
    "cdd11_test_quality",
    "dataset_input_quality",
    "psnr_ssim",
    "real_pairs_comparison",
    "summarize",
    "synthesis_speed",
]

CDD11_INPUT_REFERENCE = {"psnr": 16.00, "ssim": 0.601}  # real CDD-11 test set, mean over 11 types (OneRestore)
REAL_PAIR_KINDS = {"rain": "rain", "haze": "haze", "raindrop": "raindrop", "lowlight": "low"}  # folder -> our kind


def psnr_ssim(degraded: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """RGB PSNR (dB) and SSIM of two ``(H, W, 3)`` images in [0, 1], as OneRestore computes them."""
    psnr = peak_signal_noise_ratio(clean, degraded, data_range=1.0)
    win = min(7, *clean.shape[:2])
    ssim = structural_similarity(clean, degraded, data_range=1.0, channel_axis=-1, win_size=win - (win % 2 == 0))
    return float(psnr), float(ssim)


def dataset_input_quality(dataset: PairedDataset) -> pd.DataFrame:
    """One row per pair of a full-image dataset: ``name, type, psnr, ssim`` of input against target."""
    rows = []
    for pair in dataset.pairs:
        psnr, ssim = psnr_ssim(read_image(pair.input), read_image(pair.target))
        rows.append({"name": pair.name, "type": pair.type, "psnr": psnr, "ssim": ssim})
    return pd.DataFrame(rows)


def summarize(rows: pd.DataFrame, reference: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Mean PSNR/SSIM per type (in order of first appearance), plus an ``all types`` row (the mean of the type
    means, as the 11-type average is computed) and, if given, a reference row."""
    order = list(dict.fromkeys(rows["type"]))
    table = rows.groupby("type")[["psnr", "ssim"]].mean().loc[order]
    table["n"] = rows.groupby("type").size().loc[order]
    table.loc["all types"] = [table["psnr"].mean(), table["ssim"].mean(), int(table["n"].sum())]
    if reference is not None:
        table.loc["real CDD-11 (reference)"] = [reference["psnr"], reference["ssim"], 2200]
    table["n"] = table["n"].astype(int)
    return table


def real_pairs_comparison(
    pairs_dir: str | os.PathLike, seeds: Iterable[int] = range(4), kinds: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Real degraded input vs our synthesis on the same clean target, for each real pair.

    Args:
        pairs_dir: folder with ``<category>/<source>/{input,target}`` (e.g. ``shared/data/real_pairs``).
        seeds: synthesis seeds per clean image; spatial sizes are scaled by ``min(H, W) / 256``.
        kinds: category folder -> our degradation kind; default :data:`REAL_PAIR_KINDS`.

    Returns:
        One row per pair: ``category, source, name, real_psnr, real_ssim, syn_psnr_min, syn_psnr_mean,
        syn_psnr_max, syn_ssim_mean``.
    """
    kinds = dict(REAL_PAIR_KINDS if kinds is None else kinds)
    seeds = list(seeds)
    rows = []
    for category, kind in kinds.items():
        for source in sorted(p for p in (Path(pairs_dir) / category).glob("*") if p.is_dir()):
            for pair in PairedFolder(source / "input", source / "target", type=kind).pairs:
                clean = read_image(pair.target)
                real_psnr, real_ssim = psnr_ssim(read_image(pair.input), clean)
                scale = min(clean.shape[:2]) / 256  # synthesis sizes are for ~256 px images
                syn = np.array([psnr_ssim(degrade(clean, kind, s, scale=scale), clean) for s in seeds])  # (seeds, 2)
                rows.append({
                    "category": category, "source": source.name, "name": pair.name, "real_psnr": real_psnr,
                    "real_ssim": real_ssim, "syn_psnr_min": syn[:, 0].min(), "syn_psnr_mean": syn[:, 0].mean(),
                    "syn_psnr_max": syn[:, 0].max(), "syn_ssim_mean": syn[:, 1].mean(),
                })
    return pd.DataFrame(rows)


def synthesis_speed(kinds: Iterable[str] = DEGRADATION_TYPES, size: int = 256, repeats: int = 5) -> pd.DataFrame:
    """Milliseconds per ``size`` x ``size`` image for each kind (median over ``repeats`` seeds, after a warm-up)."""
    from skimage import data

    reps = -(-size // 512)
    clean = np.tile(data.astronaut(), (reps, reps, 1))[:size, :size].astype(np.float32) / 255.0  # (size, size, 3)
    rows = []
    for kind in kinds:
        degrade(clean, kind, 0)
        times = []
        for seed in range(repeats):
            start = time.perf_counter()
            degrade(clean, kind, seed)
            times.append(1000 * (time.perf_counter() - start))
        rows.append({"kind": kind, "ms": float(np.median(times))})
    return pd.DataFrame(rows).set_index("kind")


def cdd11_test_quality(root: str | os.PathLike, split: str = "test") -> pd.DataFrame:
    """Per-type summary of a (mini) CDD-11 split beside the real CDD-11 reference."""
    return summarize(dataset_input_quality(CDD11(root, split)), CDD11_INPUT_REFERENCE)
