"""Trainer: exact resume, NaN guard, run folders, schedule, layered configs, checkpoints, logs and callbacks."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch

from m2restore.config import ConfigError, load_yaml
from m2restore.train import Callback, CheckpointError, RunExistsError, build_config, load_model, read_checkpoint, train
from m2restore.train.cli import RECIPES
from m2restore.train.config import TrainConfig, resolve_schedule

TINY = {"patch_size": 32, "batch_size": 2, "val_patch_size": 32, "val_max_images": 3}
QUIET = {"progress": False, "tensorboard": False}


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    from m2restore.data import make_mini_cdd11

    return make_mini_cdd11(tmp_path_factory.mktemp("data") / "mini", size=40, n_train=2, n_test=1)


def _data(mini: Path, **extra) -> dict:
    return {"dataset": "mini-cdd11", "root": str(mini), **TINY, **extra}


class StopAt(Callback):
    """Request a stop after ``step`` steps (an interrupted run)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, logs) -> None:
        if logs["step"] == self.step:
            trainer.should_stop = True


def test_resume_is_exact(mini, tmp_path):
    """2N steps == N steps + resume for N more, bit for bit (weights, EMA, AdamW moments), across an epoch end."""
    cfg = {
        "model": "m2restore_tiny", "data": _data(mini),
        "train": {"max_steps": 6, "grad_accum": 2, "ema_decay": 0.9, "warmup_steps": 2, "grad_clip": 1.0,
                  "val_interval": 3, "save_interval": 4, **QUIET},
    }
    full = train(out_dir=str(tmp_path / "full"), **cfg)
    half = train(out_dir=str(tmp_path / "split"), callbacks=[StopAt(3)], **cfg)
    assert (half.steps, half.stopped) == (3, "callback")
    rest = train(out_dir=str(tmp_path / "split"), resume="auto", **cfg)
    assert rest.steps == full.steps == 6
    a, b = read_checkpoint(full.last_checkpoint), read_checkpoint(rest.last_checkpoint)
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert full.val_psnr == rest.val_psnr


class NaNAfter(torch.utils.data.Dataset):
    """Wraps a dataset; every item after the first ``n`` reads has a NaN input."""

    def __init__(self, base, n: int) -> None:
        self.base, self.n, self.reads = base, n, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[i])
        self.reads += 1
        if self.reads > self.n:
            item["input"] = torch.full_like(item["input"], float("nan"))
        return item


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(mini, tmp_path, caplog):
    from m2restore.data import build_dataset

    data = NaNAfter(build_dataset("mini-cdd11", mini, "train", patch_size=32), n=2 * 5)  # step 6 sees NaN
    with caplog.at_level(logging.ERROR, logger="m2restore.train"):
        res = train(model="adair_tiny", out_dir=str(tmp_path / "run"), train_set=data, data=_data(mini),
                    train={"max_steps": 10, "save_interval": 2, **QUIET})
    assert (res.stopped, res.steps) == ("nan", 5)
    ckpt = read_checkpoint(res.last_checkpoint)
    assert ckpt["step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert all(torch.isfinite(p).all() for p in res.model.parameters())  # the NaN batch never updated weights
    assert "NaN" in caplog.text and str(res.last_checkpoint) in caplog.text


@pytest.fixture(scope="module")
def short_run(mini, tmp_path_factory):
    """One short run shared by the checkpoint, log and callback tests."""

    class Record(Callback):
        def __init__(self) -> None:
            self.events: list[str] = []

        def on_train_start(self, trainer):
            self.events.append("start")

        def on_step_end(self, trainer, logs):
            self.events.append("step")

        def on_log(self, trainer, logs):
            self.events.append("log")

        def on_validation_end(self, trainer, metrics):
            self.events.append("val")

        def on_checkpoint(self, trainer, path):
            self.events.append(f"ckpt:{path.name}")

        def on_train_end(self, trainer, result):
            self.events.append("end")

    rec = Record()
    out = tmp_path_factory.mktemp("runs") / "short"
    res = train(model="adair_tiny", out_dir=str(out), data=_data(mini), callbacks=[rec],
                train={"max_steps": 4, "log_interval": 2, "val_interval": 2, "save_interval": 0, "progress": False})
    return res, rec


def test_callbacks_see_every_hook(short_run):
    res, rec = short_run
    assert rec.events[0] == "start" and rec.events[-1] == "end"
    assert rec.events.count("step") == 4 and rec.events.count("log") == 2 and rec.events.count("val") == 2
    assert "ckpt:last.pt" in rec.events and "ckpt:best.pt" in rec.events
    assert [r["step"] for r in res.history["val"]] == [2, 4]


def test_logs_config_and_result_files(short_run):
    res, _ = short_run
    run = res.run_dir
    train_rows = (run / "train_log.csv").read_text().splitlines()
    assert train_rows[0].startswith("step,epoch,lr,loss,l1") and len(train_rows) == 3
    assert (run / "val_log.csv").read_text().splitlines()[0].startswith("step,val_psnr")
    assert any((run / "tb").glob("events.out.tfevents.*"))
    saved = build_config(load_yaml(run / "config.yaml"))
    assert saved.model == "adair_tiny" and saved.train.max_steps == 4 and saved.model_overrides["dim"] > 0
    result = load_yaml(run / "result.json")  # JSON is YAML
    assert result["steps"] == 4 and result["effective_batch"] == 2 and result["precision"] == "no"


def test_checkpoints_describe_their_model(short_run):
    res, _ = short_run
    model, info = load_model(res.last_checkpoint)
    assert info["model"] == "adair_tiny" and info["step"] == 4 and info["weights"] == "model"
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(x), res.model.eval()(x))
    best = read_checkpoint(res.best_checkpoint)
    assert "optimizer" not in best and best["step"] == best["best_step"]
    with pytest.raises(CheckpointError, match="no 'ema' weights"):
        load_model(res.last_checkpoint, weights="ema")
    with pytest.raises(CheckpointError, match="holds model 'adair_tiny'"):
        load_model(res.last_checkpoint, model_name="promptir_tiny")


def test_run_folder_is_never_overwritten(short_run, mini):
    res, _ = short_run
    with pytest.raises(RunExistsError, match="--resume auto"):
        train(model="adair_tiny", out_dir=str(res.run_dir), data=_data(mini), train={"max_steps": 1, **QUIET})


def test_schedule_per_step_and_per_epoch():
    s = resolve_schedule(TrainConfig(max_steps=100, warmup_steps=10), micro_batches_per_epoch=7)
    assert s.total_steps == 100 and s.factor(0) == pytest.approx(0.1) and s.factor(9) == pytest.approx(1.0)
    assert s.factor(55) == pytest.approx(0.5)
    assert s.factor(99) == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    # the papers: 120 epochs, warm-up 15, cosine horizon 150, lr stepped per epoch (pl_bolts closed form)
    t = TrainConfig(epochs=120, warmup_epochs=15, cosine_epochs=150, lr_interval="epoch", grad_accum=2)
    s = resolve_schedule(t, micro_batches_per_epoch=50)  # 25 optimizer steps per epoch
    assert (s.steps_per_epoch, s.total_steps) == (25, 3000)
    for epoch in (0, 1, 14, 15, 60, 119):
        ref = epoch / 14 if epoch < 15 else 0.5 * (1 + math.cos(math.pi * (epoch - 15) / 135))
        assert s.factor(epoch * 25) == pytest.approx(ref) and s.factor(epoch * 25 + 24) == pytest.approx(ref)


def test_layered_config(tmp_path):
    recipe = "model: promptir_tiny\ntrain: {lr: 1.0e-3, max_steps: 50}\ndata: {batch_size: 3}\n"
    (tmp_path / "r.yaml").write_text(recipe)
    cfg = build_config(None, str(tmp_path / "r.yaml"), ["train.lr=0.0005", "model.dim=8"], data={"patch_size": 48})
    assert (cfg.model, cfg.train.lr, cfg.train.max_steps) == ("promptir_tiny", 5e-4, 50)
    assert (cfg.data.batch_size, cfg.data.patch_size, cfg.model_overrides) == (3, 48, {"dim": 8})
    assert cfg.model_config().dim == 8
    with pytest.raises(ConfigError, match="valid"):
        build_config(None, None, ["train.lrr=1"])
    with pytest.raises(ConfigError, match="model_overrides"):
        build_config(None, None, ["model.no_such_field=1"])
    with pytest.raises(ConfigError, match="expected a number"):
        build_config(None, None, ["train.lr=fast"])


@pytest.mark.parametrize("recipe", ["m2restore", "promptir", "adair", "cpu-tiny"])
def test_recipes_resolve(recipe):
    cfg = build_config(None, str(RECIPES / f"{recipe}.yaml"))
    cfg.model_config()
    if recipe != "cpu-tiny":
        assert cfg.train.lr == 2e-4 and cfg.train.warmup_epochs == 15 and cfg.train.lr_interval == "epoch"
