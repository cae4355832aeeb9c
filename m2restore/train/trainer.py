"""A small model-agnostic trainer: L1 plus the model's auxiliary losses, AdamW, warm-up + cosine, EMA, validation.

Any registered model trains the same way (minGPT's ``Trainer``, BasicSR's feed/optimize/validate split): the loss is
``L1(model(x), y) + aux_loss_weight * sum(model(x, return_aux=True).aux_losses)`` (M2Restore's 0.01 x balance loss
arrives already weighted), with gradient accumulation, clipping, optional EMA and periodic validation PSNR.
``accelerate`` handles the device, bf16 autocast and DDP, so ``accelerate launch -m m2restore train ...`` on many GPUs
and ``m2restore train ...`` on one CPU run the same code.

Reproducibility: data order is a per-epoch permutation seeded by (seed, epoch) and sharded by rank; every random
draw of the model and the data pipeline goes through the global generators, whose states are checkpointed; validation
runs inside a forked RNG so it never perturbs training. Hence with ``num_workers=0`` a run of 2N steps and a run of N
steps resumed for N more end with bit-identical weights on the CPU. (With workers, the order is still exact but a
worker's random crops restart at the epoch's seed.)

A NaN/inf loss stops the run before the optimizer touches the weights, keeps the last good checkpoint and says so.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..config import ConfigError, atomic_write_text, save_yaml, to_dict
from .callbacks import Callback, CSVLogger, History, ProgressBar, TensorBoardLogger
from .checkpoint import (
    BEST,
    LAST,
    CheckpointError,
    atomic_torch_save,
    find_resume,
    make_checkpoint,
    read_checkpoint,
    rng_state,
    set_rng_state,
)
from .config import ExperimentConfig, build_config, resolve_schedule

log = logging.getLogger("m2restore.train")


class RunExistsError(FileExistsError):
    """The run folder already holds a run and neither ``resume`` nor a new ``out_dir`` was given."""


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (all devices) in one place; optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def forked_rng() -> Iterator[None]:
    """Run a block without changing any global generator (python, numpy, torch CPU and CUDA)."""
    py, npy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


class EMA:
    """Exponential moving average of a model's state dict (floats averaged, integer buffers copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        live = model.state_dict(keep_vars=False)
        self.shadow = {k: v.detach().clone() for k, v in live.items()}
        self._float = [k for k, v in live.items() if v.is_floating_point()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``shadow = decay * shadow + (1 - decay) * live``."""
        live = model.state_dict()
        torch._foreach_lerp_([self.shadow[k] for k in self._float], [live[k] for k in self._float], 1.0 - self.decay)
        for k, v in live.items():
            if not v.is_floating_point():
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the averaged weights into ``model``."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield model
        finally:
            model.load_state_dict(backup)


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    run_dir: Path
    steps: int  # optimizer steps done
    stopped: str  # 'max_steps', 'callback' or 'nan'
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    best_metric: float | None  # best validation PSNR (RGB, dB)
    best_step: int | None
    val_psnr: float | None  # last validation PSNR
    wall_time_s: float
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # 'train' and 'val' rows
    model: nn.Module | None = field(default=None, repr=False)  # trained (unwrapped) model


def _resolve_precision(name: str) -> str:
    if name == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return {"fp32": "no"}.get(name, name)


def _make_accelerator(precision: str, find_unused: bool) -> Any:
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState, PartialState

    if PartialState._shared_state.get("num_processes") == 1:
        # single process (notebooks, tests): allow a new precision for each run in the same interpreter
        AcceleratorState._reset_state()
    # several CPU processes (torchrun / accelerate launch without GPUs) need accelerate's gloo backend
    cpu_ddp = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    return Accelerator(
        cpu=cpu_ddp, mixed_precision=_resolve_precision(precision),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused)],
    )


def _seed_worker(worker_id: int) -> None:
    """DataLoader workers: seed python and numpy from torch's per-worker seed."""
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


def _types_of(ds: Dataset) -> list[str]:
    """Degradation type of every item: ``ds.types`` (also through a Subset) or, failing that, each item's 'type'."""
    if isinstance(ds, torch.utils.data.Subset) and hasattr(ds.dataset, "types"):
        base = ds.dataset.types
        return [base[i] for i in ds.indices]
    if hasattr(ds, "types") and len(ds.types) == len(ds):
        return list(ds.types)
    return [ds[i]["type"] for i in range(len(ds))]


def _centre_crop(x: Tensor, size: int | None) -> Tensor:
    if size is None:
        return x
    h, w = x.shape[-2:]
    th, tw = min(size, h), min(size, w)
    y0, x0 = (h - th) // 2, (w - tw) // 2
    return x[..., y0:y0 + th, x0:x0 + tw]


class Trainer:
    """Train one model on one dataset according to an :class:`ExperimentConfig`.

    Args:
        cfg: the resolved experiment config.
        model: a model from ``m2restore.build_model`` (default: built from ``cfg.model``/``cfg.model_overrides``).
        train_set: items ``{"input", "target", "type", "name"}`` (default: built from ``cfg.data``).
        val_set: validation items (default: ``cfg.data.val_split`` of the same dataset; None if that is '').
        callbacks: extra :class:`Callback` objects, called after the built-in loggers.
    """

    def __init__(
        self, cfg: ExperimentConfig, *, model: nn.Module | None = None, train_set: Dataset | None = None,
        val_set: Dataset | None = None, callbacks: Sequence[Callback] = (),
    ) -> None:
        from ..registry import build_model

        t = cfg.train
        self.accelerator = acc = _make_accelerator(t.precision, t.find_unused_parameters)
        self.device, self.rank, self.world = acc.device, acc.process_index, acc.num_processes
        self.is_main = acc.is_main_process
        if model is not None:
            if not hasattr(model, "preset_name") or not dataclasses.is_dataclass(getattr(model, "config", None)):
                raise TypeError("train a model built by m2restore.build_model (it needs .preset_name and .config)")
            cfg = dataclasses.replace(cfg, model=model.preset_name)
        self.run_dir = cfg.run_dir
        resume_from = self._prepare_run_dir(cfg)  # fail fast, before building anything
        set_seed(cfg.seed + self.rank, t.deterministic)
        model = model if model is not None else build_model(cfg.model, **cfg.model_overrides)
        self.model_name, self.model_config = model.preset_name, to_dict(model.config)
        # the saved config names the model actually trained, with its full resolved config
        self.cfg = cfg = dataclasses.replace(cfg, model_overrides=dict(self.model_config))

        self.train_set = train_set if train_set is not None else self._build_data(cfg.data.train_split, train=True)
        if val_set is None and cfg.data.val_split and train_set is None:
            val_set = self._build_data(cfg.data.val_split, train=False)
        self.val_set = val_set
        bs = cfg.data.batch_size
        self.micro_per_epoch = len(self.train_set) // self.world // bs
        if self.micro_per_epoch < 1:
            raise ConfigError(f"the training set has {len(self.train_set)} items: too few for batch_size={bs} on "
                             f"{self.world} process(es). Lower data.batch_size or add data.")
        self.schedule = resolve_schedule(t, self.micro_per_epoch)
        self.total_steps = self.schedule.total_steps

        self.params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(self.params, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
        min_factor = t.min_lr / t.lr if t.lr > 0 else 0.0
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: self.schedule.factor(s, min_factor))
        self.model, self.optimizer = acc.prepare(model, optimizer)
        self.unwrapped: nn.Module = acc.unwrap_model(self.model)
        self.ema = EMA(self.unwrapped, t.ema_decay) if t.ema_decay else None

        self.step, self.epoch = 0, 0
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self.last_val: float | None = None
        self.should_stop = False
        self.history = History()
        self.callbacks: list[Callback] = [self.history, CSVLogger(self.run_dir)]
        if t.tensorboard:
            self.callbacks.append(TensorBoardLogger(self.run_dir))
        if t.progress:
            self.callbacks.append(ProgressBar())
        self.callbacks += list(callbacks)
        if resume_from is not None:
            self._load(resume_from)
        if self.is_main:
            save_yaml(self.cfg, self.run_dir / "config.yaml")

    # -- setup ---------------------------------------------------------------------------------------------------------
    def _prepare_run_dir(self, cfg: ExperimentConfig) -> Path | None:
        """Refuse to overwrite an existing run unless resuming; return the checkpoint to resume from."""
        run = self.run_dir
        taken = (run / "config.yaml").exists() or (run / "checkpoints").exists()
        self.accelerator.wait_for_everyone()  # every process looks before the main one creates anything
        if taken and not cfg.resume:
            raise RunExistsError(f"run folder {run} already holds a run. Continue it with --resume auto "
                                 "(resume='auto'), or write a new run with another --out.")
        resume_from = find_resume(cfg.resume, run)
        if cfg.resume == "auto" and resume_from is None and self.is_main:
            log.info("resume=auto: no checkpoint in %s, starting a new run", run)
        if self.is_main:
            (run / "checkpoints").mkdir(parents=True, exist_ok=True)
        self.accelerator.wait_for_everyone()
        return resume_from

    def _build_data(self, split: str, train: bool) -> Dataset:
        from ..data import build_dataset

        d = self.cfg.data
        kw = dict(d.options)
        if train:
            kw.update(patch_size=d.patch_size, augment=d.augment)
        else:
            kw["patch_size"] = None  # full images, centre-cropped to val_patch_size in validate()
        ds = build_dataset(d.dataset, d.root, split, **kw)
        if not train and d.val_max_images and len(ds) > d.val_max_images:
            spread = torch.linspace(0, len(ds) - 1, d.val_max_images).round().long().unique()  # covers every type
            ds = torch.utils.data.Subset(ds, spread.tolist())
        return ds

    def _load(self, path: Path) -> None:
        ckpt = read_checkpoint(path)
        if ckpt["model_name"] != self.model_name:
            raise CheckpointError(f"{path} holds '{ckpt['model_name']}' but this run trains '{self.model_name}'")
        self.unwrapped.load_state_dict(ckpt["model"])
        if "optimizer" not in ckpt:
            raise CheckpointError(f"{path} is a weights-only checkpoint; resume from checkpoints/{LAST}")
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.ema is not None:  # EMA switched on for a run saved without one starts from the loaded weights
            self.ema = EMA(self.unwrapped, self.ema.decay)
            if ckpt.get("ema") is not None:
                self.ema.load_state_dict(ckpt["ema"])
        self.step, self.epoch = ckpt["step"], ckpt["epoch"]
        self.best_metric, self.best_step = ckpt.get("best_metric"), ckpt.get("best_step")
        states = ckpt.get("rng") or []
        if len(states) == self.world:
            set_rng_state(states[self.rank])
        else:  # resumed on another number of processes: exactness is impossible, keep the streams distinct
            log.warning("checkpoint saved by %d process(es), resuming on %d: random streams re-seeded",
                        len(states), self.world)
            set_seed(self.cfg.seed + self.rank + 1_000_003 * self.step, self.cfg.train.deterministic)
        log.info("resumed from %s at step %d (epoch %d)", path, self.step, self.epoch)

    # -- data ----------------------------------------------------------------------------------------------------------
    def _batches(self, start_micro: int) -> Iterator[dict[str, Any]]:
        """Endless micro-batches from global micro-batch index ``start_micro`` (epoch = index // per-epoch count)."""
        bs, per = self.cfg.data.batch_size, self.micro_per_epoch
        epoch, offset = divmod(start_micro, per)
        while True:
            self.epoch = epoch
            g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
            perm = torch.randperm(len(self.train_set), generator=g)[self.rank::self.world]  # same on all ranks
            index_batches = perm[: per * bs].view(per, bs)[offset:].tolist()
            loader = DataLoader(
                self.train_set, batch_sampler=index_batches, num_workers=self.cfg.data.num_workers,
                pin_memory=self.device.type == "cuda", worker_init_fn=_seed_worker,
                generator=torch.Generator().manual_seed(self.cfg.seed * 7_919 + epoch),  # not the global RNG
            )
            yield from loader
            epoch, offset = epoch + 1, 0

    # -- steps ---------------------------------------------------------------------------------------------------------
    def _any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on any (no collective on a single process)."""
        if self.world == 1:
            return flag
        t = torch.tensor(float(flag), device=self.device)
        return bool(self.accelerator.reduce(t, reduction="sum").item() > 0)

    def train_step(self, batches: Iterator[dict[str, Any]]) -> dict[str, float] | None:
        """One optimizer step over ``grad_accum`` micro-batches; None when a loss or gradient is not finite."""
        t, acc = self.cfg.train, self.accelerator
        sums: dict[str, float] = defaultdict(float)
        for micro in range(t.grad_accum):
            batch = next(batches)
            x = batch["input"].to(self.device, non_blocking=True)  # (B, 3, P, P)
            y = batch["target"].to(self.device, non_blocking=True)  # (B, 3, P, P)
            sync = contextlib.nullcontext() if micro == t.grad_accum - 1 else acc.no_sync(self.model)
            with sync:
                out = self.model(x, return_aux=True)
                l1 = F.l1_loss(out.image.float(), y)
                loss = l1
                aux = {k: v.float().reshape(()) for k, v in out.aux_losses.items()} if t.aux_loss_weight else {}
                if aux:
                    loss = loss + t.aux_loss_weight * torch.stack(list(aux.values())).sum()
                values = torch.stack([loss.detach(), l1.detach(), *aux.values()]).tolist()  # one device sync
                if self._any(not math.isfinite(values[0])):
                    return None
                acc.backward(loss / t.grad_accum)
            for key, v in zip(["loss", "l1", *(f"aux/{k}" for k in aux)], values):
                sums[key] += v / t.grad_accum
        if t.grad_clip:
            norm = acc.clip_grad_norm_(self.params, t.grad_clip)
            sums["grad_norm"] = float(norm)
            if self._any(not math.isfinite(sums["grad_norm"])):
                return None
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.unwrapped)
        return sums

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """PSNR (RGB, 8-bit, mean of per-type means) on the validation set, with EMA weights when enabled."""
        from ..eval.metrics import validation_psnr

        n = len(self.val_set)
        psnrs = torch.zeros(n, dtype=torch.float64, device=self.device)
        types = _types_of(self.val_set)  # read from the file lists when possible, not by loading images
        size = self.cfg.data.val_patch_size
        ema = self.ema.applied(self.unwrapped) if self.ema is not None else contextlib.nullcontext()
        with forked_rng(), ema:
            self.unwrapped.eval()
            for i in range(n):
                if i % self.world != self.rank:
                    continue
                item = self.val_set[i]
                x = _centre_crop(item["input"], size)[None].to(self.device)  # (1, 3, h, w)
                y = _centre_crop(item["target"], size)[None]  # (1, 3, h, w)
                with self.accelerator.autocast():
                    pred = self.unwrapped(x)
                psnrs[i] = validation_psnr(pred.float(), y)[0]
            self.unwrapped.train()
        if self.world > 1:
            psnrs = self.accelerator.reduce(psnrs, reduction="sum")
        per_type: dict[str, list[float]] = defaultdict(list)
        for ty, v in zip(types, psnrs.tolist()):
            per_type[ty].append(v)
        means = {ty: sum(v) / len(v) for ty, v in per_type.items()}
        metrics: dict[str, Any] = {"step": self.step, "val_psnr": sum(means.values()) / len(means)}
        metrics.update({f"val_psnr/{ty}": m for ty, m in means.items()})
        return metrics

    # -- checkpoints ---------------------------------------------------------------------------------------------------
    def save(self, name: str = LAST, weights_only: bool = False) -> Path:
        """Write ``checkpoints/<name>`` atomically on the main process and return its path (call on every process)."""
        from accelerate.utils import gather_object

        path = self.run_dir / "checkpoints" / name
        self.accelerator.wait_for_everyone()
        rng = None
        if not weights_only:  # every process's generators, so a multi-GPU resume is exact too
            rng = [rng_state()] if self.world == 1 else gather_object([rng_state()])
        if self.is_main:
            ckpt = make_checkpoint(
                model_name=self.model_name, model_config=self.model_config, model_state=self.unwrapped.state_dict(),
                ema_state=self.ema.state_dict() if self.ema is not None else None,
                optimizer=None if weights_only else self.optimizer.state_dict(),
                scheduler=None if weights_only else self.scheduler.state_dict(),
                step=self.step, epoch=self.epoch, best_metric=self.best_metric, best_step=self.best_step,
                config=to_dict(self.cfg), rng=rng,
            )
            # recipe facts that evaluation records beside its numbers; JSON round trip = plain types for weights_only
            ckpt["train_protocol"] = json.loads(json.dumps(self.protocol()))
            atomic_torch_save(ckpt, path)
            for cb in self.callbacks:
                cb.on_checkpoint(self, path)
        self.accelerator.wait_for_everyone()
        return path

    def _validate_and_track(self) -> None:
        metrics = self.validate()
        self.last_val = metrics["val_psnr"]
        if self.best_metric is None or self.last_val > self.best_metric:
            self.best_metric, self.best_step = self.last_val, self.step
            self.save(BEST, weights_only=True)
        for cb in self.callbacks:
            cb.on_validation_end(self, metrics)

    # -- the loop ------------------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train until ``total_steps``, a stop request or a non-finite loss; return a :class:`TrainResult`."""
        t = self.cfg.train
        start = time.perf_counter()
        for cb in self.callbacks:
            cb.on_train_start(self)
        batches = self._batches(self.step * t.grad_accum)
        window: dict[str, float] = defaultdict(float)
        window_steps, window_time = 0, 0.0
        stopped, last_saved_step, last_val_step = "max_steps", None, None
        while self.step < self.total_steps:
            lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
            tic = time.perf_counter()
            sums = self.train_step(batches)
            if sums is None:
                stopped = "nan"
                self._report_nan()
                break
            window_time += time.perf_counter() - tic  # training time only: validation and saving excluded
            self.step += 1
            for k, v in sums.items():
                window[k] += v
            window_steps += 1
            logs = {"step": self.step, "epoch": self.epoch, "lr": lr, "loss": sums["loss"]}
            for cb in self.callbacks:
                cb.on_step_end(self, logs)
            if self.step % t.log_interval == 0 or self.step == self.total_steps:
                row = {**logs, **{k: v / window_steps for k, v in window.items()}}
                row["sec_per_step"] = window_time / window_steps
                images = window_steps * t.grad_accum * self.cfg.data.batch_size * self.world
                row["images_per_sec"] = images / window_time
                for cb in self.callbacks:
                    cb.on_log(self, row)
                window, window_steps, window_time = defaultdict(float), 0, 0.0
            self.should_stop = self._any(self.should_stop)
            if self.should_stop:
                stopped = "callback"
            if self.val_set is not None and t.val_interval and self.step % t.val_interval == 0:
                self._validate_and_track()
                last_val_step = self.step
            if t.save_interval and self.step % t.save_interval == 0:
                self.save()
                last_saved_step = self.step
            if self.should_stop:
                break
        if stopped != "nan":
            if self.val_set is not None and last_val_step != self.step:
                self._validate_and_track()
            if last_saved_step != self.step:
                self.save()
        result = self._result(stopped, time.perf_counter() - start)
        for cb in self.callbacks:
            cb.on_train_end(self, result)
        return result

    def _report_nan(self) -> None:
        last = self.run_dir / "checkpoints" / LAST
        kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint had been written yet"
        log.error(
            "loss or gradient became NaN/inf at step %d (epoch %d); stopped before updating the weights. %s. "
            "Try a lower train.lr, train.grad_clip=1.0, or train.precision=fp32.", self.step + 1, self.epoch, kept,
        )

    def _result(self, stopped: str, wall: float) -> TrainResult:
        ckpt_dir = self.run_dir / "checkpoints"
        last, best = ckpt_dir / LAST, ckpt_dir / BEST
        result = TrainResult(
            run_dir=self.run_dir, steps=self.step, stopped=stopped, last_checkpoint=last if last.is_file() else None,
            best_checkpoint=best if best.is_file() else None, best_metric=self.best_metric, best_step=self.best_step,
            val_psnr=self.last_val, wall_time_s=wall, history={"train": self.history.train, "val": self.history.val},
            model=self.unwrapped,
        )
        if self.is_main:
            summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(result).items()
                       if k not in ("history", "model")}
            summary.update(self.protocol())
            atomic_write_text(self.run_dir / "result.json", json.dumps(summary, indent=2))
        return result

    def protocol(self) -> dict[str, Any]:
        """Recipe facts for results tables: iterations, epochs, effective batch, precision, seed, hardware."""
        t, d = self.cfg.train, self.cfg.data
        return {
            "model": self.model_name, "dataset": d.dataset, "data_root": d.root, "seed": self.cfg.seed,
            "total_steps": self.total_steps, "steps_per_epoch": self.schedule.steps_per_epoch,
            "epochs": self.total_steps / self.schedule.steps_per_epoch, "patch_size": d.patch_size,
            "effective_batch": d.batch_size * t.grad_accum * self.world, "processes": self.world,
            "precision": str(self.accelerator.mixed_precision), "device": str(self.device),
            "hardware": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "torch": str(torch.__version__),
        }


def train(
    cfg: ExperimentConfig | dict[str, Any] | None = None, *, callbacks: Sequence[Callback] = (),
    model: nn.Module | str | None = None, train_set: Dataset | None = None, val_set: Dataset | None = None,
    config_file: str | None = None, overrides: Sequence[str] = (), **fields: Any,
) -> TrainResult:
    """Train a model; the Python face of ``m2restore train``.

    Args:
        cfg: an :class:`ExperimentConfig` or a (partial) dict of one; layered over the defaults.
        callbacks: :class:`Callback` objects (notebooks plot losses, stop early ...).
        model: a preset name (same as the ``model`` config field), or a model from ``m2restore.build_model``.
        train_set: training items instead of building ``cfg.data``; then ``val_set`` is used as given.
        val_set: validation items (None: built from ``cfg.data.val_split`` unless ``train_set`` was given).
        config_file: a YAML recipe layered over ``cfg``.
        overrides: dotted ``key=value`` strings applied last (``model.dim=32`` targets the model config).
        **fields: partial top-level sections, e.g. ``model="adair_tiny", train={"max_steps": 20}``.

    Returns:
        A :class:`TrainResult` (run folder, checkpoints, best/last validation PSNR, history, the trained model).
    """
    if isinstance(model, str):
        fields["model"], model = model, None
    cfg = build_config(cfg, config_file, tuple(overrides), **fields)
    return Trainer(cfg, model=model, train_set=train_set, val_set=val_set, callbacks=callbacks).fit()
