"""The steps of one benchmark run, as notebook 09 executes them: data, training, profile, evaluation, record.

Each step is a function so that the notebook stays thin (it calls them in order and plots between them) and so
that :func:`run_benchmark` can run the same steps in-process (notebook 10's smoke mode, scripts)::

    s = RunSettings(model="adair_tiny", dataset="mini-cdd11", out_dir="runs/x", budget_steps=300)
    root = prepare_data(s)                  # the given data_root, or a mini dataset built offline
    trained = train_model(s, root)          # m2restore.train.train with the shared budget
    prof = profile(s, trained.model)        # m2restore.eval.profile: params, FLOPs, latency
    res = evaluate_model(s, trained.model, root)   # m2restore.eval.evaluate per type, RGB and Y
    save_visual_samples(s, trained.model, root)    # a few restored test crops for the visual grid
    record = write_run_record(s, root, trained, prof, res)
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ConfigError, to_dict
from .records import METRIC_KEYS, Budget, Protocol, RunRecord, git_commit, hardware_info, write_record

MINI = {"mini-cdd11": "make_mini_cdd11", "mini-allweather": "make_mini_allweather"}
ALLWEATHER = ("allweather", "mini-allweather")  # evaluated per test subset (one split each)
SAMPLES_NAME = "samples.npz"


@dataclass
class RunSettings:
    """Notebook 09's parameters, typed. The budget fields are shared by every model of a grid."""

    model: str
    dataset: str = "mini-cdd11"
    data_root: str = ""  # empty: build the mini dataset into out_dir/data (mini datasets only)
    out_dir: str = "runs/bench"
    seed: int = 0
    device: str = "cpu"  # 'cpu', 'cuda' or 'auto'
    budget_steps: int = 300  # optimizer steps
    batch_size: int = 8
    grad_accum: int = 1
    patch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 0
    grad_clip: float = 0.0  # max global gradient norm (0: no clipping)
    threads: int = 0  # torch CPU threads (0: leave as is)
    prior_checkpoint: str = ""  # trained CLIP prior for models that use one (m2restore clip train)
    profile_size: int = 128  # square input side for FLOPs and latency
    eval_limit: int = 0  # evaluate only the first N test images per split (0: all)
    n_samples: int = 4  # restored test crops kept for the visual comparison grid
    smoke: bool = False

    @property
    def folder(self) -> Path:
        return Path(self.out_dir)


def smoke_settings(s: RunSettings) -> RunSettings:
    """The same run shrunk to seconds: 2 steps of batch 2 on 32-pixel crops, a tiny test set, small profile."""
    return dataclasses.replace(s, budget_steps=2, batch_size=2, grad_accum=1, patch_size=32, warmup_steps=0,
                               profile_size=64, n_samples=2, smoke=True)


def prepare_data(s: RunSettings) -> Path:
    """``data_root`` when given; otherwise build the mini dataset offline into ``out_dir/data/<dataset>``."""
    if s.data_root:
        root = Path(s.data_root)
        if not root.is_dir():
            raise ConfigError(f"data_root {root} does not exist. Build it (m2restore data ...) or fix the grid file")
        return root
    if s.dataset not in MINI:
        raise ConfigError(f"dataset '{s.dataset}' needs data_root (only {list(MINI)} are built on the fly)")
    from .. import data

    make = getattr(data, MINI[s.dataset])
    kw = {"size": 64, "n_train": 2, "n_test": 1} if s.smoke else {}
    return make(s.folder / "data" / s.dataset, **kw)


def dataset_version(s: RunSettings, root: Path) -> str:
    """A short description that identifies the data (mini datasets: their build parameters)."""
    info = root / "mini_info.json"
    if info.is_file():
        p = json.loads(info.read_text())["params"]
        return (f"{p['dataset']} v{p['version']} from {Path(p['source']).name}, {p['size']} px, "
                f"{p['n_train']} train / {p['n_test']} test crops, seed {p['seed']}")
    return f"{s.dataset} at {root.name}"


def model_overrides(s: RunSettings) -> dict[str, Any]:
    """Config overrides of the preset: the trained CLIP prior for models that have one."""
    from ..registry import get_config

    cfg = get_config(s.model)
    if not hasattr(cfg, "prior_checkpoint") or not getattr(cfg, "use_clip_prior", True):
        return {}
    if s.prior_checkpoint:
        if not Path(s.prior_checkpoint).is_file():
            raise ConfigError(f"prior_checkpoint {s.prior_checkpoint} not found; train one with `m2restore clip train`")
        return {"prior_checkpoint": str(s.prior_checkpoint)}
    if getattr(cfg, "prior", "") == "tiny" and cfg.prior_checkpoint is None and not s.smoke:
        raise ConfigError(f"'{s.model}' needs a trained CLIP prior: pass prior_checkpoint=PATH (m2restore clip train"
                          " or m2restore demo builds one); an untrained prior would make the comparison meaningless")
    return {}


def train_model(s: RunSettings, root: Path) -> Any:
    """Train ``s.model`` with the shared budget (``m2restore.train.train``); returns its ``TrainResult``."""
    from ..train import train

    log_every = max(1, s.budget_steps // 50)
    return train(
        model=s.model, model_overrides=model_overrides(s), seed=s.seed, out_dir=str(s.folder / "train"),
        data={"dataset": s.dataset, "root": str(root), "patch_size": s.patch_size, "batch_size": s.batch_size,
              "val_split": "", "augment": False},
        train={"max_steps": s.budget_steps, "lr": s.lr, "warmup_steps": s.warmup_steps, "grad_accum": s.grad_accum,
               "grad_clip": s.grad_clip or None, "log_interval": log_every, "val_interval": 0, "save_interval": 0,
               "tensorboard": False, "progress": False, "precision": "fp32" if s.device == "cpu" else "auto"},
    )


def profile(s: RunSettings, model: torch.nn.Module) -> dict[str, Any]:
    """Parameters, FLOPs, latency and peak memory at ``profile_size`` (``m2restore.eval.profile``)."""
    from ..eval.profile import profile_model

    device = "cuda" if s.device == "auto" and torch.cuda.is_available() else ("cpu" if s.device == "auto" else s.device)
    quick = {"repeats": 1, "warmup": 0} if s.smoke else {}
    return dict(profile_model(model, size=s.profile_size, device=device, **quick))


def _eval_splits(s: RunSettings) -> list[str]:
    if s.dataset in ALLWEATHER:
        from ..data import ALLWEATHER_SUBSETS

        return list(ALLWEATHER_SUBSETS)
    return ["test"]


def evaluate_model(s: RunSettings, model: torch.nn.Module, root: Path) -> dict[str, Any]:
    """Per-type PSNR/SSIM on RGB and Y (``m2restore.eval.evaluate``); AllWeather: one type per test subset.

    Returns:
        ``metrics`` (type -> psnr_rgb, ssim_rgb, psnr_y, ssim_y, and 'average' = mean of per-type means),
        ``input_metrics`` (the same for the degraded input left as it is: the floor every model should beat),
        ``n_images`` per type, the evaluator's ``protocol`` and ``frame`` (a DataFrame for display).
    """
    import pandas as pd

    restored, counts, protocol = _per_type(s, model, root)
    degraded, _, _ = _per_type(s, torch.nn.Identity(), root)
    frame = pd.DataFrame(restored).T.assign(input_psnr_rgb=pd.Series({t: v["psnr_rgb"] for t, v in degraded.items()}),
                                            n=pd.Series(counts))
    return {"metrics": restored, "input_metrics": degraded, "n_images": counts, "protocol": protocol, "frame": frame}


def _per_type(s: RunSettings, model: torch.nn.Module, root: Path) -> tuple[dict, dict[str, int], dict[str, Any]]:
    """(metrics with 'average', image count per type, protocol) of ``model`` on every test split."""
    from ..eval import evaluate

    device = None if s.device == "auto" else s.device
    per_type, counts, protocol = {}, {}, {}
    for split in _eval_splits(s):
        res = evaluate(model, s.dataset, data_root=str(root), split=split, device=device, progress=False,
                       limit=s.eval_limit or None)
        protocol = res.protocol
        rows = res.per_type if split == "test" else {split: res.average | {"count": len(res.rows)}}
        for t, row in rows.items():
            per_type[t] = {k: float(row[k]) for k in METRIC_KEYS}
            counts[t] = int(row["count"])
    average = {k: sum(v[k] for v in per_type.values()) / len(per_type) for k in METRIC_KEYS}
    return {**per_type, "average": average}, counts, protocol


def _centre(img: torch.Tensor, size: int) -> torch.Tensor:
    h, w = img.shape[-2:]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[..., top:top + size, left:left + size]


def _to_u8(img: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8."""
    return (img.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def save_visual_samples(s: RunSettings, model: torch.nn.Module, root: Path, crop: int = 160) -> Path:
    """Restore ``n_samples`` test images of distinct types (centre crops) and save them as ``samples.npz``."""
    from ..data import build_dataset
    from .figures import save_samples

    ds = build_dataset(s.dataset, root, _eval_splits(s)[0], patch_size=None, check="none")  # evaluate checked it
    picks: dict[str, int] = {}
    for i, t in enumerate(ds.types):
        picks.setdefault(t, i)
    chosen = list(picks.values())[: s.n_samples]
    device = next(model.parameters()).device
    ins, outs, tgts, types = [], [], [], []
    model.eval()
    with torch.no_grad():
        for i in chosen:
            item = ds[i]
            x = _centre(item["input"], crop)[None]  # (1, 3, h, w)
            ins.append(_to_u8(x)[0])
            outs.append(_to_u8(model(x.to(device)).float())[0])
            tgts.append(_to_u8(_centre(item["target"], crop)[None])[0])
            types.append(item["type"])
    return save_samples(s.folder / SAMPLES_NAME, np.stack(ins), np.stack(outs), np.stack(tgts), types)


def scan_backend(model: torch.nn.Module, device: str) -> str:
    """The selective-scan implementation the model ran ('none' for models without Mamba layers)."""
    from ..eval.evaluate import scan_backend as _backend

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto"
                       else device)
    return _backend(model, dev) or "none"


def write_run_record(
    s: RunSettings, root: Path, trained: Any, prof: dict[str, Any], evaluation: dict[str, Any],
    wall: dict[str, float], parameters: dict[str, Any] | None = None,
) -> RunRecord:
    """Assemble the run's :class:`RunRecord` and write ``out_dir/record.json``."""
    from ..models.base import count_parameters
    from ..registry import get_preset

    model, proto = trained.model, evaluation["protocol"]
    prior = getattr(model, "prior", None)
    rows = trained.history.get("train", [])
    tp = trained.run_dir / "result.json"
    train_protocol = json.loads(tp.read_text()) if tp.is_file() else {}
    record = RunRecord(
        run_id=f"{s.dataset}/{s.model}/seed{s.seed}", model=s.model, dataset=s.dataset, seed=s.seed,
        family=get_preset(s.model).family, dataset_version=dataset_version(s, root),
        metrics=evaluation["metrics"], n_images=evaluation["n_images"], input_metrics=evaluation["input_metrics"],
        protocol=Protocol(crop_border=int(proto.get("crop_border", 0)), data_range=1.0,
                          y_channel=str(proto.get("y_definition", Protocol.y_channel)),
                          ssim=str(proto.get("ssim", Protocol.ssim)),
                          average=str(proto.get("average", Protocol.average)),
                          quantize_8bit=bool(proto.get("quantize_8bit", True))),
        budget=Budget(steps=trained.steps, batch_size=s.batch_size, grad_accum=s.grad_accum, patch_size=s.patch_size,
                      lr=s.lr, effective_batch=int(train_protocol.get("effective_batch", 0))),
        params=count_parameters(model),
        params_frozen=count_parameters(model, False)
        + (count_parameters(prior, None) if isinstance(prior, torch.nn.Module) else 0),
        profile={k: v for k, v in prof.items() if isinstance(v, (int, float, str, type(None)))},
        wall_time_s={**wall, "total": sum(wall.values())},
        hardware={**hardware_info(str(proto.get("device", s.device))),
                  "train_device": train_protocol.get("device", s.device),
                  "precision": train_protocol.get("precision", "")},
        scan_backend=scan_backend(model, s.device), git_commit=git_commit(),
        history={"step": [float(r["step"]) for r in rows], "loss": [float(r["loss"]) for r in rows]},
        samples=SAMPLES_NAME if (s.folder / SAMPLES_NAME).is_file() else "",
        parameters=dict(parameters or dataclasses.asdict(s)), model_config=to_dict(model.config),
    )
    write_record(record, s.folder)
    return record


def run_benchmark(s: RunSettings) -> RunRecord:
    """All steps of one run in this process (what notebook 09 does cell by cell)."""
    s = smoke_settings(s) if s.smoke else s
    if s.threads > 0:
        torch.set_num_threads(s.threads)
    root = prepare_data(s)
    wall: dict[str, float] = {}
    t = time.perf_counter()
    trained = train_model(s, root)
    wall["train"] = time.perf_counter() - t
    t = time.perf_counter()
    prof = profile(s, trained.model)
    wall["profile"] = time.perf_counter() - t
    t = time.perf_counter()
    evaluation = evaluate_model(s, trained.model, root)
    save_visual_samples(s, trained.model, root)
    wall["eval"] = time.perf_counter() - t
    return write_run_record(s, root, trained, prof, evaluation, wall)
