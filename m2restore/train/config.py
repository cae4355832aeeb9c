"""Experiment configuration: which model, which data, how to optimise, where to write.

Layered (STYLE item 7): these dataclass defaults, then a YAML recipe (``m2restore/configs/*.yaml``), then command-line
flags and dotted ``--set train.lr=1e-4`` overrides, all type-checked; unknown keys fail with the list of valid ones.
The resolved config is saved as ``config.yaml`` in the run folder and inside every checkpoint.

Length is counted in optimizer steps (iterations). The papers count epochs; ``train.epochs``,
``train.warmup_epochs`` and ``train.cosine_epochs`` express their recipes and are converted with the data loader's
length once the dataset is known (:func:`resolve_schedule`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict

DATASETS = ("cdd11", "allweather", "mini-cdd11", "mini-allweather", "folder", "synthetic")


@dataclass
class DataConfig:
    """Training and validation data (``m2restore.data.build_dataset``)."""

    dataset: str = "mini-cdd11"  # one of DATASETS
    root: str = ""  # dataset folder (--data-root); unused by 'synthetic'
    patch_size: int = 128  # random training crop; PromptIR/AdaIR 128, the M2Restore release 224
    augment: bool = False  # random flips/rotations of training crops (PromptIR/AdaIR: yes; M2Restore release: no)
    batch_size: int = 8  # micro-batch per process (per GPU); effective = batch_size * grad_accum * processes
    num_workers: int = 0  # DataLoader workers; 0 keeps 2-core CPUs fast and resume bit-exact
    train_split: str = "train"
    val_split: str = "test"  # held-out split for periodic validation ('' = no validation)
    val_patch_size: int | None = 128  # validation crop (None = full images; slow on CPU)
    val_max_images: int = 22  # N validation images spread evenly over the split (0 = all); 22 = 2 per CDD-11 type
    options: dict[str, Any] = field(default_factory=dict)  # extra build_dataset keyword arguments


@dataclass
class TrainConfig:
    """Optimisation, schedule, intervals and precision."""

    # length: iterations, or epochs as in the papers (epochs wins when set)
    max_steps: int = 1000  # optimizer steps
    epochs: float | None = None  # PromptIR 120, AdaIR 150, M2Restore 200
    # AdamW, as all three papers (torch defaults otherwise)
    lr: float = 2e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    # linear warm-up then cosine annealing to min_lr
    warmup_steps: int = 0
    warmup_epochs: float | None = None  # the papers: 15
    cosine_steps: int | None = None  # cosine horizon; None = the run length
    cosine_epochs: float | None = None  # PromptIR 150, AdaIR/M2Restore 180 (longer than the run: lr never hits 0)
    min_lr: float = 0.0
    lr_interval: Literal["step", "epoch"] = "step"  # 'epoch': lr changes once per epoch (the papers' Lightning code)
    # gradients
    grad_accum: int = 1  # micro-batches per optimizer step (M2Restore release: 4)
    grad_clip: float | None = None  # max global L2 norm; None = no clipping
    ema_decay: float | None = None  # e.g. 0.999; None = no EMA
    aux_loss_weight: float = 1.0  # multiplies the model's (already weighted) auxiliary losses; 0 disables them
    # intervals (optimizer steps; 0 = never, except a final validation and checkpoint)
    log_interval: int = 10
    val_interval: int = 500
    save_interval: int = 500
    # hardware
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA when supported, else fp32
    find_unused_parameters: bool = True  # DDP: PromptIR/AdaIR keep layers unused in forward (official quirk)
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)
    # outputs
    tensorboard: bool = True
    progress: bool = True  # tqdm bar


@dataclass
class ExperimentConfig:
    """One training run."""

    model: str = "adair_tiny"  # registered preset (m2restore models)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # preset config fields, e.g. {dim: 32}
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 42  # every rank uses seed + rank; data order uses seed
    out_dir: str = ""  # run folder; '' = runs/<model>_<dataset>
    resume: str | None = None  # 'auto' (continue out_dir if it has a checkpoint) or a checkpoint path

    def __post_init__(self) -> None:
        if self.data.dataset not in DATASETS:
            raise ConfigError(f"data.dataset: unknown dataset '{self.data.dataset}'; choose one of {DATASETS}")
        t = self.train
        for name in ("max_steps", "grad_accum", "log_interval"):
            if getattr(t, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(t, name)}")
        if t.ema_decay is not None and not 0.0 < t.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay must be in (0, 1), got {t.ema_decay}")
        if self.data.batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {self.data.batch_size}")

    @property
    def run_dir(self) -> Path:
        """The run folder (``out_dir`` or ``runs/<model>_<dataset>``)."""
        return Path(self.out_dir or f"runs/{self.model}_{self.data.dataset}")

    def model_config(self) -> Any:
        """The preset's resolved model config with ``model_overrides`` (type-checked)."""
        from ..registry import get_preset

        try:
            return get_preset(self.model).config(**self.model_overrides)
        except ConfigError as e:
            raise ConfigError(f"model_overrides for '{self.model}': {e}") from None


def build_config(
    base: ExperimentConfig | dict[str, Any] | None = None, config_file: str | None = None,
    overrides: list[str] | tuple[str, ...] = (), **fields: Any,
) -> ExperimentConfig:
    """Layer defaults <- ``base`` <- YAML ``config_file`` <- ``fields`` (partial mappings) <- dotted ``overrides``.

    ``model.X=v`` in ``overrides`` is shorthand for ``model_overrides.X=v``.
    """
    if base is None:
        cfg = ExperimentConfig()
    elif isinstance(base, ExperimentConfig):
        cfg = base
    else:
        cfg = merge(ExperimentConfig(), base)
    if config_file:
        cfg = merge(cfg, load_yaml(config_file))
    if fields:
        cfg = merge(cfg, fields)
    rewritten = [("model_overrides." + o[len("model."):]) if o.startswith("model.") else o for o in overrides]
    cfg = apply_overrides(cfg, rewritten)
    cfg.model_config()  # fail now on a bad model name or override, not after loading data
    return cfg


def merge(cfg: ExperimentConfig, data: dict[str, Any]) -> ExperimentConfig:
    """Merge a (partial) mapping into ``cfg``; the ``data``/``train`` sections keep the keys ``data`` leaves out."""
    merged = to_dict(cfg)
    for key, value in data.items():
        if key in ("data", "train") and isinstance(value, dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    if "model" in data and data["model"] != cfg.model and "model_overrides" not in data:
        merged["model_overrides"] = {}  # overrides of another preset do not carry over
    return from_dict(ExperimentConfig, merged)


@dataclass(frozen=True)
class Schedule:
    """Run length and learning-rate schedule in optimizer steps, resolved against the data loader."""

    total_steps: int
    steps_per_epoch: int
    warmup: float  # in ``unit``s
    horizon: float  # cosine horizon in ``unit``s
    unit: str  # 'step' or 'epoch'

    def factor(self, step: int, min_factor: float = 0.0) -> float:
        """Learning-rate multiplier for optimizer step ``step`` (0-based).

        Per step: ``(t + 1) / W`` during warm-up. Per epoch: the closed form of the papers' scheduler
        (pl_bolts ``LinearWarmupCosineAnnealingLR`` stepped with the epoch index: ``t / (W - 1)``). Then
        ``min + (1 - min) (1 + cos(pi (t - W) / (T - W))) / 2``, held at ``min`` after the horizon ``T``.
        """
        t = step if self.unit == "step" else step // self.steps_per_epoch
        w, horizon = self.warmup, self.horizon
        if t < w:
            return (t + 1) / w if self.unit == "step" else t / max(1.0, w - 1)
        progress = min(1.0, (t - w) / max(1e-12, horizon - w))
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def resolve_schedule(t: TrainConfig, micro_batches_per_epoch: int) -> Schedule:
    """Turn the epoch-style fields of ``t`` into steps, given the loader length per process."""
    steps_per_epoch = max(1, micro_batches_per_epoch // t.grad_accum)
    total = round(t.epochs * steps_per_epoch) if t.epochs is not None else t.max_steps
    per = steps_per_epoch if t.lr_interval == "step" else 1  # epochs -> schedule units
    per_step = 1.0 if t.lr_interval == "step" else 1.0 / steps_per_epoch  # steps -> schedule units
    warmup = t.warmup_epochs * per if t.warmup_epochs is not None else t.warmup_steps * per_step
    if t.cosine_epochs is not None:
        horizon = t.cosine_epochs * per
    else:
        horizon = (t.cosine_steps if t.cosine_steps is not None else total) * per_step
    return Schedule(max(1, total), steps_per_epoch, float(warmup), float(horizon), t.lr_interval)
