"""Profiling: parameter split, FLOPs against hand counts (incl. the grouped-conv backward fix), memory, CLI, table."""
from __future__ import annotations

import csv
import importlib.util
import json
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from m2restore.eval.profile import compare_latency, flop_counter, main, profile_model
from m2restore.registry import build_model


class _ConvNet(nn.Module):
    """3 -> 8 (3x3) -> depthwise 3x3, so FLOPs and activation sizes are easy to count by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.frozen = nn.Linear(4, 4).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw(self.conv(x))


def test_profile_counts_flops_params_and_memory_by_hand():
    row = profile_model(_ConvNet(), size=16, repeats=2, batch=2)
    per_image = 2 * 16 * 16 * (8 * 3 * 9 + 8 * 1 * 9)  # 2 FLOPs per multiply-add, two convolutions
    assert row["flops"] == 2 * per_image
    assert row["gflops_per_image"] == pytest.approx(per_image / 1e9)
    assert row["params_trainable"] == 8 * 3 * 9 + 8 * 9 and row["params_frozen"] == 4 * 4 + 4
    static = (8 * 27 + 72 + 20 + 2 * 3 * 16 * 16) * 4  # weights + input, float32
    activations = 2 * 2 * 8 * 16 * 16 * 4  # conv output and dw output are alive together
    assert row["peak_mem_mb"] * 2**20 == pytest.approx(static + activations, rel=0.01)
    assert row["latency_ms"] > 0 and row["latency_ms_min"] <= row["latency_ms"]


def test_backward_flops_are_groups_aware():
    dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
    x = torch.rand(1, 16, 8, 8, requires_grad=True)
    with flop_counter() as counter:
        dw(x).sum().backward()
    forward = 2 * 8 * 8 * 16 * 9
    assert counter.get_total_flops() == 3 * forward  # forward + grad input + grad weight


def test_profile_registered_tiny_preset_with_overrides():
    row = profile_model("adair_tiny", size=32, repeats=1, dim=8)
    model = build_model("adair_tiny", dim=8)
    assert row["model"] == "adair_tiny" and row["mode"] == "inference"
    assert row["params_trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert row["params_frozen"] == sum(p.numel() for p in model.parameters() if not p.requires_grad) > 0
    train = profile_model("adair_tiny", size=32, repeats=1, dim=8, backward=True)
    assert train["mode"] == "forward+backward" and 2.5 * row["flops"] < train["flops"] < 3.5 * row["flops"]
    with pytest.raises(TypeError, match="overrides apply to a preset name"):
        profile_model(model, dim=8)


def test_cli_profile_prints_summary_and_json(tmp_path, capsys):
    out = tmp_path / "row.json"
    assert main(["--model", "promptir_tiny", "--size", "24", "--repeats", "1", "--set", "model.dim=8",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "promptir_tiny" in text and "trainable" in text and "GFLOPs" in text and out.is_file()
    assert main(["--model", "nope"]) == 2
    assert "registered:" in capsys.readouterr().err
    assert main(["--model", "adair_tiny", "--set", "dim=abc"]) == 2
    assert "expected an integer" in capsys.readouterr().err


def test_cli_profile_several_models_prints_one_table_with_ratios(tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert main(["--model", "promptir_tiny", "adair_tiny", "--size", "24", "--repeats", "2", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| promptir_tiny |" in text and "| adair_tiny |" in text and "ratio to adair_tiny" in text
    rows = json.loads(out.read_text())
    assert [r["model"] for r in rows] == ["promptir_tiny", "adair_tiny"] and rows[1]["latency_ratio"] == 1.0
    assert main(["--model", "promptir_tiny", "adair_tiny", "--set", "dim=8"]) == 2


def test_benchmark_script_writes_csv_and_markdown(tmp_path):
    path = Path(__file__).parents[1] / "benchmarks" / "profile_models.py"
    spec = importlib.util.spec_from_file_location("profile_models", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--models", "adair_tiny", "promptir_tiny", "--size", "16", "--repeats", "1",
                        "--reference", "adair_tiny", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "profile_cpu_16px.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["adair_tiny", "promptir_tiny"]
    md = (tmp_path / "profile_cpu_16px.md").read_text()
    assert md.count("\n| ") == 3 and "| adair_tiny |" in md and "ratio to adair_tiny" in md
    assert float(rows[0]["latency_ratio"]) == 1.0 and float(rows[1]["latency_ratio"]) > 0
    assert script.main(["--models", "no_such_model", "--out", str(tmp_path)]) == 2


class _Sleeper(nn.Module):
    """Takes a known wall time per forward."""

    def __init__(self, seconds: float, name: str) -> None:
        super().__init__()
        self.seconds, self.preset_name = seconds, name
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return x + self.w


def test_compare_latency_interleaves_and_gives_per_round_ratios():
    out = compare_latency([_Sleeper(0.04, "slow"), _Sleeper(0.02, "fast")], size=8, rounds=3, reference="fast")
    assert out["fast"]["ratio"] == 1.0 and out["slow"]["rounds"] == 3
    assert 1.6 < out["slow"]["ratio"] < 2.4
    assert out["slow"]["latency_ms"] >= 40 and out["slow"]["latency_ms_min"] <= out["slow"]["latency_ms"]
    with pytest.raises(ValueError, match="reference 'adair'"):
        compare_latency([_Sleeper(0.0, "a")], size=8, rounds=1, reference="adair")
