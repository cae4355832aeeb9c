"""Training: a model-agnostic trainer with callbacks, layered experiment configs and exact resume.

Python API (what ``m2restore train`` and the notebooks use)::

    from m2restore.train import train
    result = train(model="adair_tiny", data={"dataset": "mini-cdd11", "root": "data/mini"},
                   train={"max_steps": 200}, out_dir="runs/demo", callbacks=[MyCallback()])
    result.best_checkpoint, result.val_psnr, result.history["train"]
"""
from .callbacks import Callback, CSVLogger, History, ProgressBar, TensorBoardLogger
from .checkpoint import CheckpointError, load_model, read_checkpoint
from .config import DataConfig, ExperimentConfig, TrainConfig, build_config
from .trainer import EMA, RunExistsError, Trainer, TrainResult, set_seed, train

__all__ = [
    "EMA",
    "CSVLogger",
    "Callback",
    "CheckpointError",
    "DataConfig",
    "ExperimentConfig",
    "History",
    "ProgressBar",
    "RunExistsError",
    "TensorBoardLogger",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_config",
    "load_model",
    "read_checkpoint",
    "set_seed",
    "train",
]
