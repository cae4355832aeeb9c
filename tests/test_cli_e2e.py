"""``m2restore train`` -> ``test`` -> ``restore`` end to end on a generated mini CDD-11, through the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from m2restore import cli
from m2restore.train import read_checkpoint


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    from m2restore.data import make_mini_cdd11

    return make_mini_cdd11(tmp_path_factory.mktemp("data") / "mini", size=40, n_train=2, n_test=1)


def test_train_test_restore(mini, tmp_path, capsys):
    run = tmp_path / "run"
    train_args = [
        "train", "--config", "cpu-tiny", "--model", "adair_tiny", "--dataset", "mini-cdd11", "--data-root", str(mini),
        "--max-steps", "4", "--patch-size", "32", "--batch-size", "2", "--out", str(run), "--no-progress",
        "--set", "train.val_interval=2", "--set", "data.val_max_images=4", "--set", "data.val_patch_size=32",
    ]
    assert cli.main(train_args) == 0
    best, last = run / "checkpoints" / "best.pt", run / "checkpoints" / "last.pt"
    assert best.is_file() and read_checkpoint(last)["step"] == 4
    assert read_checkpoint(last)["config"]["train"]["lr"] == 5e-4  # from the cpu-tiny recipe

    capsys.readouterr()
    assert cli.main(train_args) == 2  # the run folder is taken
    assert "already holds a run" in capsys.readouterr().err
    assert cli.main(["train", "--out", str(run), "--resume", "auto", "--max-steps", "6", "--no-progress"]) == 0
    assert read_checkpoint(last)["step"] == 6

    out = tmp_path / "eval"
    test_args = ["test", "--checkpoint", str(best), "--dataset", "mini-cdd11", "--data-root", str(mini),
                 "--crop-border", "2", "--out", str(out), "--no-progress"]
    assert cli.main(test_args) == 0
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["per_type"]) == 11 and all(v["count"] == 1 for v in doc["per_type"].values())
    assert doc["protocol"]["checkpoint"] == str(best) and doc["protocol"]["crop_border"] == 2
    assert doc["protocol"]["seed"] == 0 and doc["protocol"]["train"]["effective_batch"] == 2  # the recipe travels
    assert 5 < doc["average"]["psnr_y"] < 60 and 0 < doc["average"]["ssim_rgb"] <= 1
    assert "average" in capsys.readouterr().out

    (tmp_path / "broken.png").write_bytes(b"\x89PNG but truncated")
    restored = tmp_path / "restored"
    restore_args = ["restore", str(mini / "test" / "haze"), str(tmp_path / "broken.png"), "--checkpoint", str(best),
                    "--out", str(restored), "--tile", "32", "--overlap", "8", "--no-progress"]
    assert cli.main(restore_args) == 1  # one input skipped, the rest restored
    assert "broken.png" in capsys.readouterr().err
    assert sorted(p.name for p in restored.iterdir()) == sorted(p.name for p in (mini / "test" / "haze").iterdir())


def test_official_checkpoint_needs_model(tmp_path, capsys):
    fake = tmp_path / "official.ckpt"
    fake.write_bytes(b"not a torch file")
    args = ["test", "--checkpoint", str(fake), "--dataset", "mini-cdd11", "--data-root", str(tmp_path)]
    assert cli.main(args) == 2
    assert "--model" in capsys.readouterr().err


def test_module_entry_point_answers_help():
    out = subprocess.run([sys.executable, "-m", "m2restore", "restore", "--help"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0 and "--overlap" in out.stdout


@pytest.mark.slow
def test_two_cpu_processes(mini, tmp_path):
    """The same command under torchrun (what `accelerate launch` runs): 2 CPU processes, gloo DDP, then a resume."""
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "m2restore",
           "train", "--config", "cpu-tiny", "--model", "adair_tiny", "--dataset", "mini-cdd11",
           "--data-root", str(mini), "--patch-size", "32", "--batch-size", "2", "--out", str(run), "--no-progress",
           "--set", "data.val_max_images=2", "--set", "train.tensorboard=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([*cmd, "--max-steps", "2"], capture_output=True, text=True, timeout=300, env=env, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((run / "result.json").read_text())
    assert (result["processes"], result["effective_batch"], result["steps"]) == (2, 4, 2)
    assert out.stdout.count("trained 2 steps") == 1  # only the main process reports
    assert len(read_checkpoint(run / "checkpoints" / "last.pt")["rng"]) == 2  # one generator state per process
    out = subprocess.run([*cmd, "--max-steps", "3", "--resume", "auto"], capture_output=True, text=True, timeout=300,
                         env=env, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resumed from" in out.stderr and "re-seeded" not in out.stderr
    assert read_checkpoint(run / "checkpoints" / "last.pt")["step"] == 3
