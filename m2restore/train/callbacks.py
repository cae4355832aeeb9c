"""Trainer callbacks: the hooks notebooks use, and the built-in CSV, TensorBoard and progress-bar loggers.

A callback overrides any of the ``on_*`` methods; the trainer calls them on every process (the built-in loggers
write only on the main one). Setting ``trainer.should_stop = True`` ends the run after the current step, with a
final validation and checkpoint, exactly like reaching ``max_steps``.

Per optimizer step the trainer hands ``on_step_end`` a ``logs`` dict with ``step``, ``epoch``, ``lr`` and ``loss``;
every ``train.log_interval`` steps ``on_log`` receives the interval means of ``loss``, ``l1`` and each auxiliary
loss (``aux/<name>``) plus throughput.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .trainer import Trainer, TrainResult


class Callback:
    """Base class: every hook is a no-op."""

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first step (after any resume)."""

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        """After every optimizer step."""

    def on_log(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        """Every ``train.log_interval`` steps, with interval means."""

    def on_validation_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """After each validation (``val_psnr`` and per-type ``val_psnr/<type>``)."""

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        """After a checkpoint file was written (main process)."""

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        """Once, when the run ends for any reason (max steps, a stop request, a NaN loss)."""


class CSVLogger(Callback):
    """Append training rows to ``train_log.csv`` and validation rows to ``val_log.csv`` in the run folder.

    Columns are fixed by the first row written; a resumed run appends to the same files.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._columns: dict[str, list[str]] = {}

    def _write(self, name: str, row: dict[str, Any]) -> None:
        path = self.run_dir / name
        if name not in self._columns:
            if path.is_file() and path.stat().st_size > 0:
                with open(path, newline="") as f:
                    self._columns[name] = next(csv.reader(f))
            else:
                self._columns[name] = list(row)
                with open(path, "w", newline="") as f:
                    csv.writer(f).writerow(self._columns[name])
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, self._columns[name], extrasaction="ignore").writerow(row)

    def on_log(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if trainer.is_main:
            self._write("train_log.csv", logs)

    def on_validation_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if trainer.is_main:
            self._write("val_log.csv", metrics)


class TensorBoardLogger(Callback):
    """Scalars to ``<run>/tb`` with ``torch.utils.tensorboard`` (imported on first use)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.log_dir = Path(run_dir) / "tb"
        self._writer: Any = None

    def _scalars(self, trainer: Trainer, values: dict[str, Any], prefix: str) -> None:
        if not trainer.is_main:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.log_dir))
        step = values["step"]
        for key, value in values.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)):
                self._writer.add_scalar(f"{prefix}/{key}", value, step)

    def on_log(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        self._scalars(trainer, logs, "train")

    def on_validation_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        self._scalars(trainer, metrics, "val")

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class ProgressBar(Callback):
    """A tqdm bar over optimizer steps showing the latest loss, learning rate and validation PSNR."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._post: dict[str, str] = {}

    def on_train_start(self, trainer: Trainer) -> None:
        if trainer.is_main:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=trainer.total_steps, initial=trainer.step, desc=trainer.model_name, unit="step",
                             dynamic_ncols=True)

    def on_step_end(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def on_log(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        if self._bar is not None:
            self._post.update(loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}")
            self._bar.set_postfix(self._post, refresh=False)

    def on_validation_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if self._bar is not None:
            self._post["val_psnr"] = f"{metrics['val_psnr']:.2f}"
            self._bar.set_postfix(self._post, refresh=False)

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class History(Callback):
    """Keep every logged and validation row in memory (``trainer.history``) for notebooks and results."""

    def __init__(self) -> None:
        self.train: list[dict[str, Any]] = []
        self.val: list[dict[str, Any]] = []

    def on_log(self, trainer: Trainer, logs: dict[str, Any]) -> None:
        self.train.append(dict(logs))

    def on_validation_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        self.val.append(dict(metrics))
