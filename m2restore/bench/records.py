"""The JSON record every benchmark run writes: the only input of tables and figures.

One run (model x dataset x seed of a grid) leaves a folder with the executed notebook and ``record.json``. The record
is self-describing: metrics per degradation type on RGB and on Y, the protocol they were measured under, the training
budget, wall time, hardware, selective-scan backend, git commit, seed, parameter count and the training curve. A
failed run leaves a record too (``status: failed``) naming the notebook cell that raised.

Records are written atomically (temporary file + ``os.replace``) so that an interrupted run never leaves half a JSON.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, atomic_write_text, from_dict

SCHEMA = "m2restore.bench.record/1"
RECORD_NAME = "record.json"
METRIC_KEYS = ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y")  # per type: PSNR (dB) and SSIM on RGB and on Y
AVERAGE = "average"  # key of the mean over degradation types in ``metrics``


@dataclass
class Protocol:
    """How the numbers were measured; printed in every table caption (STYLE.md 14)."""

    crop_border: int = 0  # pixels cut from each side before PSNR/SSIM (BasicSR ``crop_border``)
    data_range: float = 1.0  # images in [0, data_range]; PSNR = 10 log10(range^2 / MSE)
    y_channel: str = "BT.601 YCbCr"  # what "y" means (papers' MATLAB Y, not pyiqa's default YIQ)
    ssim: str = "gaussian 11x11, sigma 1.5"  # SSIM window
    average: str = "mean over types of per-type means"  # how the ``average`` row is formed
    quantize_8bit: bool = True  # outputs rounded to 8-bit levels before measuring (what a saved PNG holds)


@dataclass
class Budget:
    """Training budget; identical for every model of a grid so that the comparison is fair."""

    steps: int = 0  # optimiser steps (iterations, not epochs)
    batch_size: int = 0  # per step, before accumulation
    grad_accum: int = 1
    patch_size: int = 0  # training crop side (pixels)
    lr: float = 0.0
    effective_batch: int = 0  # batch_size x grad_accum x world size

    def __post_init__(self) -> None:
        if not self.effective_batch:
            self.effective_batch = self.batch_size * self.grad_accum


@dataclass
class RunRecord:
    """One run's result. ``metrics[type][key]`` with ``key`` in :data:`METRIC_KEYS`; ``type`` includes 'average'."""

    run_id: str  # "<dataset>/<model>/seed<k>", unique in a grid
    model: str
    dataset: str
    seed: int
    status: str = "ok"  # "ok" | "failed"
    schema: str = SCHEMA
    grid: str = ""
    family: str = ""
    dataset_version: str = ""  # e.g. "mini-cdd11 size=128 seed=0" or a real dataset's release tag
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    n_images: dict[str, int] = field(default_factory=dict)  # test images per type
    input_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # the degraded input itself, same keys
    protocol: Protocol = field(default_factory=Protocol)
    budget: Budget = field(default_factory=Budget)
    params: int = 0  # trainable parameters (excluding a frozen CLIP prior)
    params_frozen: int = 0
    profile: dict[str, Any] = field(default_factory=dict)  # latency_ms, flops_g, size, device, peak_mem_mb
    wall_time_s: dict[str, float] = field(default_factory=dict)  # train, eval, total, notebook
    hardware: dict[str, Any] = field(default_factory=dict)
    scan_backend: str = ""
    git_commit: str = ""
    created: str = ""
    history: dict[str, list[float]] = field(default_factory=dict)  # training curve: step, loss, (val_psnr ...)
    samples: str = ""  # file (relative to the record) with a few restored test images for visual grids
    notebook: str = ""  # executed notebook (relative to the record)
    parameters: dict[str, Any] = field(default_factory=dict)  # the papermill parameters of the run
    model_config: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] = field(default_factory=dict)  # failed runs: cell, exec_count, ename, evalue, source

    def __post_init__(self) -> None:
        if self.status not in ("ok", "failed"):
            raise ConfigError(f"record {self.run_id}: status must be 'ok' or 'failed', got {self.status!r}")
        if self.status == "ok":
            check_metrics(self.metrics, where=f"record {self.run_id}")
        if not self.created:
            self.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return dataclasses.asdict(self)


def check_metrics(metrics: dict[str, dict[str, float]], where: str = "metrics") -> None:
    """Raise ConfigError unless every type has the four finite metrics and an 'average' entry exists."""
    if AVERAGE not in metrics:
        raise ConfigError(f"{where}: metrics need an '{AVERAGE}' entry (mean over types); got {sorted(metrics)}")
    for name, row in metrics.items():
        missing = [k for k in METRIC_KEYS if k not in row]
        if missing:
            raise ConfigError(f"{where}: type '{name}' lacks {missing}; every type needs {list(METRIC_KEYS)}")
        bad = [k for k in METRIC_KEYS if not isinstance(row[k], (int, float)) or not math.isfinite(row[k])]
        if bad:
            raise ConfigError(f"{where}: type '{name}' has non-finite {bad}: {row}")


def average_metrics(per_type: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """``per_type`` plus an 'average' row: the unweighted mean over types of each metric."""
    types = [t for t in per_type if t != AVERAGE]
    if not types:
        raise ConfigError("average_metrics: no degradation types given")
    out = {t: {k: float(per_type[t][k]) for k in METRIC_KEYS} for t in types}
    out[AVERAGE] = {k: sum(out[t][k] for t in types) / len(types) for k in METRIC_KEYS}
    return out


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_record(record: RunRecord, folder: str | os.PathLike) -> Path:
    """Write ``folder/record.json`` atomically and return its path."""
    path = Path(folder) / RECORD_NAME
    atomic_write_text(path, json.dumps(record.to_dict(), indent=2, default=_json_default) + "\n")
    return path


def read_record(path: str | os.PathLike) -> RunRecord:
    """Load and validate one record; errors name the file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{p}: cannot read benchmark record ({e})") from None
    if data.get("schema") != SCHEMA:
        raise ConfigError(f"{p}: schema {data.get('schema')!r} is not {SCHEMA!r}; rerun the benchmark to rewrite it")
    try:
        return from_dict(RunRecord, data)
    except (ConfigError, TypeError) as e:
        raise ConfigError(f"{p}: {e}") from None


def find_records(runs_dir: str | os.PathLike) -> list[Path]:
    """Paths of all records under ``runs_dir``, sorted; folders whose name starts with '_' (archives) are skipped."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise ConfigError(f"runs folder not found: {root}. Run `m2restore bench --grid FILE.yaml --out DIR` first")
    found = root.rglob(RECORD_NAME)
    return sorted(p for p in found if not any(part.startswith("_") for part in p.relative_to(root).parts))


def load_records(runs_dir: str | os.PathLike, include_failed: bool = True) -> list[RunRecord]:
    """All records under ``runs_dir`` (see :func:`find_records`), optionally only the successful ones."""
    records = [read_record(p) for p in find_records(runs_dir)]
    return [r for r in records if include_failed or r.status == "ok"]


def git_commit(repo: str | os.PathLike | None = None) -> str:
    """``<sha>`` of HEAD (with '+dirty' when tracked files changed), or 'unknown' outside a git checkout."""
    cwd = Path(repo) if repo else Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=False)
        if sha.returncode != 0:
            return "unknown"
        status = ["git", "status", "--porcelain", "--untracked-files=no"]
        dirty = subprocess.run(status, cwd=cwd, capture_output=True, text=True, check=False)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hardware_info(device: str = "cpu") -> dict[str, Any]:
    """CPU model and core count, torch threads, GPU name and library versions, for the record."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "device": str(device),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": None,
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    return info
