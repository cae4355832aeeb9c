"""Evaluate a model per degradation type, with the papers' average and the protocol recorded beside the numbers.

The all-in-one papers report one row per degradation type and, for CDD-11, an 'average' that is the mean of the
per-type means (each type counts once, whatever its number of images). :func:`evaluate` computes both, for every
metric column of :class:`~m2restore.eval.metrics.MetricSet` (PSNR/SSIM on RGB and Y by default), and
:meth:`EvalResults.save` writes ``results.json`` (protocol, per-type table, average, per-image rows),
``results.csv`` (the table) and ``per_image.csv``, each atomically.
"""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..config import atomic_write_text
from .metrics import SPACES, MetricSet

AVERAGE = "average"  # row name of the mean of per-type means


@dataclass
class EvalResults:
    """Scores of one evaluation."""

    columns: list[str]  # metric columns, e.g. psnr_rgb, psnr_y, ssim_rgb, ssim_y
    rows: list[dict[str, Any]]  # per image: name, type, seconds, one value per column
    per_type: dict[str, dict[str, float]]  # type -> column -> mean (plus 'count')
    average: dict[str, float]  # column -> mean of the per-type means
    protocol: dict[str, Any] = field(default_factory=dict)

    def table_rows(self) -> list[dict[str, Any]]:
        """Per-type rows then the average row, as flat dicts (type, count, columns...)."""
        out = [{"type": t, **v} for t, v in self.per_type.items()]
        out.append({"type": AVERAGE, "count": sum(v["count"] for v in self.per_type.values()), **self.average})
        return out

    def table(self, digits: int = 4) -> str:
        """A plain-text table: one row per type and the average (the papers' layout)."""
        head = ["type", "count", *self.columns]
        lines = [head]
        for r in self.table_rows():
            lines.append([r["type"], str(int(r["count"])), *(f"{r[c]:.{digits}f}" for c in self.columns)])
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        text = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths)))
                for line in lines]
        text.insert(1, "-" * len(text[0]))
        text.insert(len(text) - 1, "-" * len(text[0]))
        return "\n".join(text)

    def to_frame(self) -> Any:
        """The per-type table and average as a pandas DataFrame indexed by type."""
        import pandas as pd

        return pd.DataFrame(self.table_rows()).set_index("type")

    def save(self, out_dir: str | os.PathLike) -> dict[str, Path]:
        """Write results.json, results.csv and per_image.csv into ``out_dir`` (atomically); return their paths."""
        out = Path(out_dir)
        paths = {"json": out / "results.json", "csv": out / "results.csv", "per_image": out / "per_image.csv"}
        doc = {"protocol": self.protocol, "columns": self.columns, "per_type": self.per_type,
               "average": self.average, "per_image": self.rows}
        atomic_write_text(paths["json"], json.dumps(doc, indent=2))
        atomic_write_text(paths["csv"], _csv(self.table_rows(), ["type", "count", *self.columns]))
        atomic_write_text(paths["per_image"], _csv(self.rows, ["type", "name", *self.columns, "seconds"]))
        return paths


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def summarise(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> tuple[dict[str, dict[str, float]], dict]:
    """Per-type means (types in order of first appearance) and the mean of those means."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["type"], []).append(r)
    per_type = {t: {"count": len(g), **{c: sum(r[c] for r in g) / len(g) for c in columns}} for t, g in groups.items()}
    average = {c: sum(v[c] for v in per_type.values()) / len(per_type) for c in columns} if per_type else {}
    return per_type, average


def hardware() -> dict[str, Any]:
    """Where the numbers were measured."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="ignore").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "torch": str(torch.__version__), "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def file_digest(path: str | os.PathLike, n: int = 16) -> str:
    """First ``n`` hex digits of a file's SHA-256 (identifies the checkpoint in results)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def scan_backend(model: nn.Module, device: torch.device) -> str | None:
    """The selective-scan implementation a Mamba-based model runs on ``device`` (None for models without Mamba)."""
    if not any("mamba" in type(m).__name__.lower() for m in model.modules()):
        return None
    from ..ops.selective_scan import scan_backend as _backend

    return _backend(torch.empty(1, device=device))


def evaluate(
    model_or_checkpoint: nn.Module | str | os.PathLike, dataset: Dataset | str, *, data_root: str | None = None,
    split: str = "test", dataset_options: dict[str, Any] | None = None, model_name: str | None = None,
    weights: str = "auto", metrics: Sequence[str] | str = ("psnr", "ssim"), spaces: Sequence[str] = SPACES,
    crop_border: int = 0, quantize: bool = True, device: str | torch.device | None = None, tile: int | None = None,
    overlap: int = 32, limit: int | None = None, save_images: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None, progress: bool = True,
) -> EvalResults:
    """Score a model on a paired dataset, per degradation type.

    Args:
        model_or_checkpoint: a model, an m2restore checkpoint, or an official PromptIR/AdaIR checkpoint (then
            ``model_name`` is required).
        dataset: items ``{"input", "target", "type", "name"}`` at full size, or a dataset name for
            ``m2restore.data.build_dataset`` (with ``data_root``, ``split`` and ``dataset_options``).
        model_name: preset for official checkpoints.
        weights: 'auto' (EMA when the checkpoint has it), 'ema' or 'model'.
        metrics: 'psnr', 'ssim' and/or pyiqa metric names (e.g. 'lpips'; skipped with a message when offline).
        spaces: colour spaces of PSNR/SSIM.
        crop_border: pixels removed from each side before measuring.
        quantize: measure 8-bit-rounded images (what a saved PNG holds).
        device: where the model runs (default CUDA when available).
        tile: run :func:`m2restore.infer.tiled_forward` with this tile size (None: whole images).
        overlap: tile overlap.
        limit: evaluate only the first ``limit`` images (smoke runs).
        save_images: folder for restored images (``<type>/<name>.png``); None saves nothing.
        out_dir: if given, :meth:`EvalResults.save` writes the results files there.
        progress: tqdm bar.

    Returns:
        :class:`EvalResults` with per-image rows, per-type means, the mean of per-type means and the protocol.
    """
    from tqdm.auto import tqdm

    from ..infer import pick_device, tiled_forward

    dev = pick_device("auto") if device is None else torch.device(device)
    info: dict[str, Any]
    if isinstance(model_or_checkpoint, nn.Module):
        model = model_or_checkpoint.to(dev).eval()
        info = {"model": getattr(model, "preset_name", type(model).__name__), "checkpoint": None, "kind": "module"}
    else:
        from ..train.checkpoint import load_model

        model, info = load_model(model_or_checkpoint, model_name=model_name, weights=weights, device=dev)
        info["checkpoint_sha256"] = file_digest(model_or_checkpoint)
    dataset_desc: dict[str, Any] = {"name": type(dataset).__name__, "root": None, "split": None}
    if isinstance(dataset, str):
        from ..data import build_dataset

        if data_root is None:
            raise ValueError(f"dataset '{dataset}' given by name needs data_root")
        dataset_desc = {"name": dataset, "root": str(data_root), "split": split}
        dataset = build_dataset(dataset, data_root, split, patch_size=None, **(dataset_options or {}))
    metric_set = MetricSet(metrics, spaces=spaces, crop_border=crop_border, quantize=quantize, device=dev)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    rows: list[dict[str, Any]] = []
    for i in tqdm(range(n), desc="evaluate", unit="img", disable=not progress):
        item = dataset[i]
        x, y = item["input"][None], item["target"][None]  # (1, 3, H, W) on the CPU
        start = time.perf_counter()
        pred = tiled_forward(model, x, tile=tile, overlap=overlap, device=dev)  # (1, 3, H, W) on the CPU
        seconds = time.perf_counter() - start
        scores = metric_set(pred, y)
        rows.append({"type": item["type"], "name": item["name"], **{k: v[0] for k, v in scores.items()},
                     "seconds": seconds})
        if save_images is not None:
            from ..data.io import write_image

            write_image(Path(save_images) / item["type"] / f"{Path(item['name']).name}.png",
                        pred[0].clamp(0, 1).permute(1, 2, 0).numpy())
    per_type, average = summarise(rows, metric_set.columns)
    protocol = {
        **metric_set.protocol(),
        "average": "mean of per-type means (each degradation type weighs equally)",
        **info,
        "dataset": dataset_desc, "images": n, "tile": tile, "overlap": overlap if tile else None,
        "device": str(dev), "precision": "fp32", "scan_backend": scan_backend(model, dev), "hardware": hardware(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    results = EvalResults(metric_set.columns, rows, per_type, average, protocol)
    if out_dir is not None:
        results.save(out_dir)
    return results
