"""``m2restore demo``'s prior stage: a finished prior is reused only when its recipe and budget match."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from m2restore.bench import demo


def test_prior_is_reused_only_for_the_same_recipe(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_train_prior(cfg):
        calls.append(cfg)
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "prior.pt").write_bytes(b"weights")
        (out / "summary.json").write_text(json.dumps({"steps": cfg.steps, "config": dataclasses.asdict(cfg)}))
        return {"checkpoint": str(out / "prior.pt"), "steps": cfg.steps}

    monkeypatch.setattr("m2restore.clip.train_prior", fake_train_prior)
    data, out = tmp_path / "data", tmp_path / "prior"
    path, summary = demo.train_tiny_prior(data, out, minutes=0.0, threads=2, steps=7)
    assert path == out / "prior.pt" and summary["steps"] == 7 and calls[-1].steps == 7 and calls[-1].resume == ""
    demo.train_tiny_prior(data, out, minutes=0.0, threads=1, steps=7)  # threads do not change the prior
    assert len(calls) == 1
    demo.train_tiny_prior(data, out, minutes=0.0, threads=2, steps=9)
    assert len(calls) == 2 and "another recipe or budget" in capsys.readouterr().out
    demo.train_tiny_prior(tmp_path / "other", out, minutes=0.0, threads=2, steps=9)
    assert len(calls) == 3


def test_snapshot_copies_records_samples_and_notebooks_only(tmp_path):
    runs = tmp_path / "runs"
    for model in ("a_tiny", "b_tiny"):
        run = runs / "mini" / model / "seed0"
        (run / "train" / "checkpoints").mkdir(parents=True)
        (run / "record.json").write_text("{}")
        (run / "run.ipynb").write_text("{}")
        (run / "train" / "checkpoints" / "last.pt").write_bytes(b"x")
    (runs / "mini" / "a_tiny" / "seed0" / "samples.npz").write_bytes(b"npz")
    (runs / "_archive" / "old").mkdir(parents=True)
    (runs / "_archive" / "old" / "record.json").write_text("{}")
    assert demo.snapshot_records(runs, tmp_path / "records") == 2
    copied = sorted(p.relative_to(tmp_path / "records").as_posix() for p in (tmp_path / "records").rglob("*")
                    if p.is_file())
    assert copied == ["mini/a_tiny/seed0/record.json", "mini/a_tiny/seed0/run.ipynb", "mini/a_tiny/seed0/samples.npz",
                      "mini/b_tiny/seed0/record.json", "mini/b_tiny/seed0/run.ipynb"]
