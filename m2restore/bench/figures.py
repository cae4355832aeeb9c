"""Seaborn figures of a benchmark: per-type PSNR bars, quality vs parameters and vs latency, training curves and
visual comparison grids.

Numbers come from the runs' ``record.json`` files only; the visual grids also read the small ``samples.npz`` each run
saves next to its record (a few test images: degraded input, restored output, ground truth, uint8 HWC), named in the
record's ``samples`` field. A figure whose inputs are missing is skipped, never faked.
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only; also safe inside a kernel that already chose a backend
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .records import AVERAGE, RunRecord
from .report import input_metrics, records_frame

SAMPLE_KEYS = ("input", "output", "target", "types")  # arrays in samples.npz: (N, H, W, 3) uint8 x3, (N,) str


def save_samples(path: str | os.PathLike, inputs: np.ndarray, outputs: np.ndarray, targets: np.ndarray,
                 types: list[str]) -> Path:
    """Write ``samples.npz``: uint8 (N, H, W, 3) degraded inputs, restored outputs and targets, plus the type names."""
    p = Path(path)
    arrays = {k: np.asarray(v) for k, v in (("input", inputs), ("output", outputs), ("target", targets))}
    for k, a in arrays.items():
        if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3:
            raise ValueError(f"save_samples: '{k}' must be uint8 (N, H, W, 3), got {a.dtype} {a.shape}")
    p.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(p, types=np.asarray(types, dtype=str), **arrays)
    return p


def _savefig(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def per_type_bars(
    frame: pd.DataFrame, dataset: str, space: str, path: Path, inputs: dict[str, dict[str, float]] | None = None,
) -> Path:
    """Bar per model and degradation type (mean over seeds, error bar = sample std); black ticks: the input."""
    d = frame[(frame.dataset == dataset) & (frame.space == space)]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * d["type"].nunique() * max(1, d["model"].nunique()) / 2), 3.6))
    sns.barplot(data=d, x="type", y="psnr", hue="model", errorbar=("sd", 1), ax=ax, capsize=0.1)
    types = list(dict.fromkeys(d["type"]))
    if inputs:
        xs = [i for i, t in enumerate(types) if t in inputs]
        ax.scatter(xs, [inputs[types[i]][f"psnr_{space}"] for i in xs], marker="_", s=600, color="k", zorder=5,
                   label="degraded input")
    ax.set(xlabel="degradation type", ylabel=f"PSNR {space.upper()} (dB)", title=f"{dataset}: PSNR per type ({space})")
    lo = min(d["psnr"].min(), *(inputs[t][f"psnr_{space}"] for t in types if t in (inputs or {})))
    ax.set_ylim(bottom=max(0.0, lo - 3.0))
    ax.tick_params(axis="x", rotation=35)
    ax.legend(fontsize=8, ncols=min(3, d["model"].nunique()))
    return _savefig(fig, path)


def quality_vs(frame: pd.DataFrame, dataset: str, x: str, path: Path) -> Path | None:
    """Average RGB PSNR against ``x`` ('params' or 'latency_ms'); one point per model, bars = std over seeds."""
    d = frame[(frame.dataset == dataset) & (frame.space == "rgb") & (frame["type"] == AVERAGE)].dropna(subset=[x])
    if d.empty:
        return None
    agg = d.groupby("model", sort=False).agg(q=("psnr", "mean"), s=("psnr", "std"), v=(x, "mean")).reset_index()
    scale, label = {"params": (1e-6, "trainable parameters (M)"), "latency_ms": (1.0, "latency per image (ms)")}[x]
    agg["v"] = agg["v"] * scale
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    palette = dict(zip(agg.model, sns.color_palette(n_colors=len(agg)), strict=True))
    for row in agg.itertuples():
        ax.errorbar(row.v, row.q, yerr=0 if pd.isna(row.s) else row.s, fmt="o", ms=8, capsize=4,
                    color=palette[row.model], label=row.model)
        ax.annotate(row.model, (row.v, row.q), textcoords="offset points", xytext=(6, 6), fontsize=8)
    if agg["v"].max() > 10 * agg["v"].min() > 0:  # log axis only when the values span a decade
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.margins(x=0.2, y=0.2)
    ax.set(xlabel=label, ylabel="average PSNR RGB (dB)", title=f"{dataset}: quality vs {label.split(' (')[0]}")
    ax.grid(alpha=0.3)
    return _savefig(fig, path)


def training_curves(records: list[RunRecord], dataset: str, path: Path) -> Path | None:
    """Training loss against step per model (line = mean over seeds, band = std)."""
    rows = [
        {"model": r.model, "seed": r.seed, "step": s, "loss": v}
        for r in records if r.status == "ok" and r.dataset == dataset
        for s, v in zip(r.history.get("step", []), r.history.get("loss", []), strict=False)
    ]
    if not rows:
        return None
    d = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    sns.lineplot(data=d, x="step", y="loss", hue="model", errorbar=("sd", 1), ax=ax)
    ax.set(xlabel="iteration", ylabel="training loss (L1 + auxiliary)", title=f"{dataset}: training curves")
    ax.grid(alpha=0.3)
    return _savefig(fig, path)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def visual_grid(runs: list[tuple[Path, RunRecord]], dataset: str, path: Path, max_rows: int = 4) -> Path | None:
    """Rows = test images (one per type while there are types), columns = input, each model, ground truth."""
    chosen: dict[str, dict[str, np.ndarray]] = {}
    for rec_path, r in sorted(runs, key=lambda pr: pr[1].seed):
        if r.status != "ok" or r.dataset != dataset or r.model in chosen or not r.samples:
            continue
        f = rec_path.parent / r.samples
        if f.is_file():
            with np.load(f) as z:
                chosen[r.model] = {k: z[k] for k in SAMPLE_KEYS}
    if not chosen:
        return None
    ref = next(iter(chosen.values()))
    models = [m for m, s in chosen.items() if s["output"].shape == ref["output"].shape]
    rows = _pick_rows(list(ref["types"]), max_rows)
    cols = ["input", *models, "target"]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.0 * len(cols), 2.0 * len(rows)), squeeze=False)
    for i, n in enumerate(rows):
        for j, c in enumerate(cols):
            img = ref[c][n] if c in ("input", "target") else chosen[c]["output"][n]
            ax = axes[i, j]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            sub = "" if c == "target" else f"\n{_psnr(img, ref['target'][n]):.2f} dB"
            if i == 0 or sub:
                ax.set_title((c if i == 0 else "") + sub, fontsize=8)
            if j == 0:
                ax.set_ylabel(str(ref["types"][n]), fontsize=8)
    fig.suptitle(f"{dataset}: visual comparison (PSNR RGB per image)", fontsize=10)
    return _savefig(fig, path)


def _pick_rows(types: list[str], k: int) -> list[int]:
    """Indices of up to ``k`` samples, preferring distinct types."""
    first: dict[str, int] = {}
    for i, t in enumerate(types):
        first.setdefault(t, i)
    picks = list(first.values())[:k]
    return picks + [i for i in range(len(types)) if i not in picks][: k - len(picks)]


def make_figures(runs: list[tuple[Path, RunRecord]], out_dir: str | os.PathLike) -> list[Path]:
    """Every figure for every dataset of ``runs`` (pairs of record path and record); returns the files written."""
    out = Path(out_dir)
    records = [r for _, r in runs]
    frame = records_frame(records)
    if frame.empty:
        return []
    sns.set_theme(style="whitegrid", context="paper")
    written: list[Path | None] = []
    for dataset in dict.fromkeys(frame["dataset"]):
        inputs = input_metrics(records, dataset)
        written += [per_type_bars(frame, dataset, s, out / f"{dataset}_psnr_per_type_{s}.png", inputs)
                    for s in ("rgb", "y")]
        written.append(quality_vs(frame, dataset, "params", out / f"{dataset}_psnr_vs_params.png"))
        written.append(quality_vs(frame, dataset, "latency_ms", out / f"{dataset}_psnr_vs_latency.png"))
        written.append(training_curves(records, dataset, out / f"{dataset}_training_curves.png"))
        written.append(visual_grid(runs, dataset, out / f"{dataset}_visual.png"))
    return [p for p in written if p is not None]
