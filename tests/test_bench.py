"""Benchmark runner and report on a small fake notebook: a two-run grid, a grid with a deliberately failing run,
no silent overwrites, mean ± std over seeds, and tables that reproduce from the JSON records alone.

The fake notebook stands in for notebook 09 (which needs the real models): it declares the same runner parameters
and writes a record through ``m2restore.bench.records`` with metrics derived from its parameters.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from m2restore.bench import records as rec
from m2restore.bench.cli import main as bench_main
from m2restore.bench.report import build_report
from m2restore.bench.runner import Grid, load_grid, run_grid
from m2restore.config import ConfigError

pytestmark = pytest.mark.timeout(240)

TYPES = ["low", "haze", "rain"]
PARAMS = 'model = "a"\ndataset = "toy"\ndata_root = ""\nseed = 0\nout_dir = ""\nbudget_steps = 10\nsmoke = False\n'
BODY = '''\
from pathlib import Path
import numpy as np
from m2restore.bench import records as rec
from m2restore.bench.figures import save_samples
if model == "broken":
    raise RuntimeError("deliberate failure")
base = 20.0 + len(model) + 0.25 * seed + budget_steps / 100
per_type = {t: {"psnr_rgb": base + i, "ssim_rgb": 0.5 + 0.01 * i + 0.001 * seed, "psnr_y": base + i + 1.5,
                "ssim_y": 0.6 + 0.01 * i} for i, t in enumerate(TYPES)}
rng = np.random.default_rng(seed)
imgs = rng.integers(0, 255, size=(3, 8, 8, 3), dtype=np.uint8)
save_samples(Path(out_dir) / "samples.npz", imgs, imgs[::-1].copy(), imgs, TYPES)
record = rec.RunRecord(
    run_id=f"{dataset}/{model}/seed{seed}", model=model, dataset=dataset, seed=seed, family=model,
    metrics=rec.average_metrics(per_type), n_images={t: 2 for t in TYPES}, params=1000 * len(model),
    input_metrics=rec.average_metrics({t: dict.fromkeys(rec.METRIC_KEYS, 15.0 + i) for i, t in enumerate(TYPES)}),
    budget=rec.Budget(steps=budget_steps, batch_size=2, patch_size=16, lr=1e-3),
    profile={"latency_ms": 5.0 * len(model)},
    history={"step": [1, 2, 3], "loss": [0.3, 0.2, 0.1 + 0.01 * seed]}, samples="samples.npz",
    hardware={"device": "cpu", "cpu": "test"}, dataset_version="toy v1",
)
rec.write_record(record, out_dir)
'''


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# fake benchmark run"),
        nbformat.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(f"TYPES = {TYPES!r}"),
        nbformat.v4.new_code_cell(BODY),
    ]
    path = tmp_path_factory.mktemp("nb") / "fake_run.ipynb"
    nbformat.write(nb, path)
    return path


def _grid(notebook: Path, models: list[str], seeds: list[int] | None = None, dataset: str = "cdd11", **kw) -> Grid:
    params = {"budget_steps": 10, "smoke": True, **kw.pop("parameters", {})}
    kw.setdefault("kernel", "python3")
    return Grid(name="t", models=models, datasets=[{"name": dataset}], seeds=seeds or [0], notebook=str(notebook),
                parameters=params, **kw)


@pytest.fixture(scope="module")
def two_runs(notebook: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("two")
    outcomes = run_grid(_grid(notebook, ["a", "bb"]), out, log=lambda s: None)
    return out, outcomes


def test_two_run_grid_writes_notebooks_and_records(two_runs: tuple[Path, list]) -> None:
    out, outcomes = two_runs
    assert [o.status for o in outcomes] == ["ok", "ok"]
    for model in ("a", "bb"):
        folder = out / "runs" / "cdd11" / model / "seed0"
        assert (folder / "run.ipynb").is_file()
        r = rec.read_record(folder / "record.json")
        assert r.status == "ok" and r.grid == "t" and r.notebook == "run.ipynb"
        assert r.parameters["model"] == model and r.parameters["budget_steps"] == 10
        assert r.wall_time_s["notebook"] > 0
        avg = np.mean([r.metrics[t]["psnr_rgb"] for t in TYPES])
        assert r.metrics["average"]["psnr_rgb"] == pytest.approx(avg)
    assert (out / "grid-t.yaml").is_file()


def test_report_tables_protocol_and_paper_rows(two_runs: tuple[Path, list], tmp_path: Path) -> None:
    out, _ = two_runs
    rep = build_report(out / "runs", tmp_path)
    assert rep.n_ok == 2 and not rep.failed
    rgb = pd.read_csv(tmp_path / "tables" / "cdd11_rgb.csv")
    measured = rgb[rgb.source == "measured"].set_index("model")
    r = rec.read_record(out / "runs" / "cdd11" / "bb" / "seed0" / "record.json")
    assert measured.loc["bb", "rain_psnr_mean"] == pytest.approx(r.metrics["rain"]["psnr_rgb"])
    assert measured.loc["bb", "average_ssim_mean"] == pytest.approx(r.metrics["average"]["ssim_rgb"])
    y_md = (tmp_path / "tables" / "cdd11_y.md").read_text()
    assert "Y (BT.601 YCbCr)" in y_md and "crop_border=0" in y_md and "10 iterations" in y_md
    degraded = rgb[rgb.source == "input"].set_index("model")
    assert degraded.loc["degraded input", "rain_psnr_mean"] == pytest.approx(r.input_metrics["rain"]["psnr_rgb"])
    paper = rgb[rgb.source == "paper-reported"].set_index("model")
    assert paper.loc["M2Restore", "average_psnr_mean"] == pytest.approx(30.51)
    assert "M2Restore (paper-reported)" in y_md
    tex = (tmp_path / "tables" / "cdd11_summary.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\midrule" in tex and "paper-reported" in tex
    names = {p.name for p in rep.figures}
    assert {"cdd11_psnr_per_type_rgb.png", "cdd11_psnr_vs_params.png", "cdd11_visual.png"} <= names


def test_tables_reproduce_from_records_alone(two_runs: tuple[Path, list], tmp_path: Path) -> None:
    out, _ = two_runs
    first = build_report(out / "runs", tmp_path / "a", figures=False)
    only_json = tmp_path / "records"
    for p in rec.find_records(out / "runs"):
        dest = only_json / p.relative_to(out / "runs")
        dest.parent.mkdir(parents=True)
        shutil.copy(p, dest)
    build_report(only_json, tmp_path / "b", figures=False)
    for table in first.tables:
        rel = table.relative_to(tmp_path / "a")
        assert (tmp_path / "b" / rel).read_text() == table.read_text(), rel


def test_finished_runs_are_skipped_and_force_archives(notebook: Path, tmp_path: Path) -> None:
    grid = _grid(notebook, ["a"])
    run_grid(grid, tmp_path, log=lambda s: None)
    rec_path = tmp_path / "runs" / "cdd11" / "a" / "seed0" / "record.json"
    before = rec_path.read_text()
    assert [o.status for o in run_grid(grid, tmp_path, log=lambda s: None)] == ["skipped"]
    assert rec_path.read_text() == before
    changed = run_grid(_grid(notebook, ["a"], parameters={"budget_steps": 11}), tmp_path, log=lambda s: None)
    assert changed[0].status == "skipped" and "['budget_steps']" in changed[0].message  # said, not silently reused
    assert rec_path.read_text() == before
    assert [o.status for o in run_grid(grid, tmp_path, force=True, log=lambda s: None)] == ["ok"]
    archived = list((tmp_path / "runs" / "_archive").rglob("record.json"))
    assert len(archived) == 1 and archived[0].read_text() == before
    assert len(rec.load_records(tmp_path / "runs")) == 1  # archives are not part of the report


def test_failing_run_is_recorded_and_does_not_stop_others(notebook: Path, tmp_path: Path) -> None:
    outcomes = run_grid(_grid(notebook, ["broken", "a"]), tmp_path, log=lambda s: None)
    assert [o.status for o in outcomes] == ["failed", "ok"]
    failed = rec.read_record(tmp_path / "runs" / "cdd11" / "broken" / "seed0" / "record.json")
    assert failed.status == "failed" and failed.error["ename"] == "RuntimeError"
    assert "deliberate failure" in failed.error["evalue"]
    nb = nbformat.read(tmp_path / "runs" / "cdd11" / "broken" / "seed0" / "run.ipynb", as_version=4)
    cell = nb.cells[failed.error["cell"]]
    assert "deliberate failure" in cell.source and any(o.get("ename") == "RuntimeError" for o in cell.outputs)
    rep = build_report(tmp_path / "runs", tmp_path / "report", figures=False)
    assert rep.n_ok == 1 and [r.model for r in rep.failed] == ["broken"]
    assert "deliberate failure" in (tmp_path / "report" / "report.md").read_text()
    # the rerun replaces the failed run (archived), the finished one is kept
    outcomes = run_grid(_grid(notebook, ["broken", "a"]), tmp_path, log=lambda s: None)
    assert [o.status for o in outcomes] == ["failed", "skipped"]
    assert len(list((tmp_path / "runs" / "_archive").rglob("record.json"))) == 1


def test_parameters_and_kernel_checked_before_running(notebook: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown parameter.*budget_stepz"):
        run_grid(_grid(notebook, ["a"], parameters={"budget_stepz": 3}), tmp_path, log=lambda s: None)
    with pytest.raises(ConfigError, match="kernel 'no-such-kernel' is not installed"):
        run_grid(_grid(notebook, ["a"], kernel="no-such-kernel"), tmp_path, log=lambda s: None)
    with pytest.raises(ConfigError, match="set per run"):
        _grid(notebook, ["a"], parameters={"seed": 3})
    with pytest.raises(ConfigError, match="set per run"):
        run_grid(_grid(notebook, ["a"]), tmp_path, extra={"data_root": "x"}, log=lambda s: None)
    assert not (tmp_path / "runs").exists()


def _write_fake(root: Path, model: str, seed: int, psnr: float) -> None:
    per_type = {t: {"psnr_rgb": psnr + i, "ssim_rgb": 0.8, "psnr_y": psnr + i + 1, "ssim_y": 0.85} for i, t in
                enumerate(TYPES)}
    r = rec.RunRecord(run_id=f"mini/{model}/seed{seed}", model=model, dataset="mini", seed=seed, params=10,
                      metrics=rec.average_metrics(per_type), budget=rec.Budget(steps=5, batch_size=2, patch_size=8))
    rec.write_record(r, root / "mini" / model / f"seed{seed}")


def test_mean_and_std_over_seeds(tmp_path: Path) -> None:
    psnrs = {"m2": [30.0, 30.5, 31.3], "base": [29.0, 29.2, 29.1]}
    for model, values in psnrs.items():
        for seed, v in enumerate(values):
            _write_fake(tmp_path / "runs", model, seed, v)
    build_report(tmp_path / "runs", tmp_path / "out", figures=False)
    head = pd.read_csv(tmp_path / "out" / "tables" / "mini_summary.csv").set_index("model")
    for model, values in psnrs.items():
        avg = np.array(values) + 1.0  # mean of +0, +1, +2 over the three types
        assert head.loc[model, "psnr_rgb_mean"] == pytest.approx(avg.mean())
        assert head.loc[model, "psnr_rgb_std"] == pytest.approx(avg.std(ddof=1))
        assert head.loc[model, "seeds"] == 3
    md = (tmp_path / "out" / "tables" / "mini_summary.md").read_text()
    assert f"{np.mean(psnrs['m2']) + 1:.2f} ± {np.std(np.array(psnrs['m2']), ddof=1):.2f}" in md
    assert "Mean ± sample std over 3 seeds [0, 1, 2]" in md
    assert list(head.index) == ["m2", "base"]  # sorted by average RGB PSNR
    assert "paper-reported" not in md  # nothing was published for this dataset


def test_record_validation_and_atomic_write(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="average"):
        rec.RunRecord(run_id="x", model="m", dataset="d", seed=0, metrics={"low": dict.fromkeys(rec.METRIC_KEYS, 1.0)})
    with pytest.raises(ConfigError, match="non-finite"):
        rec.RunRecord(run_id="x", model="m", dataset="d", seed=0, metrics=rec.average_metrics(
            {"low": {**dict.fromkeys(rec.METRIC_KEYS, 1.0), "psnr_y": float("nan")}}))
    _write_fake(tmp_path, "m", 0, 25.0)
    path = tmp_path / "mini" / "m" / "seed0" / "record.json"
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]  # no temporary file left behind
    data = json.loads(path.read_text())
    data["schema"] = "old/0"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="record.json: schema"):
        rec.read_record(path)


def test_cli_report_and_shipped_grids(two_runs: tuple[Path, list], tmp_path: Path) -> None:
    out, _ = two_runs
    assert bench_main(["report", "--runs", str(out / "runs"), "--out", str(tmp_path), "--no-figures"]) == 0
    assert (tmp_path / "report.md").is_file()
    assert bench_main(["report", "--runs", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    grids = sorted(Path(__file__).resolve().parents[1].glob("benchmarks/grids/*.yaml"))
    assert {g.stem for g in grids} >= {"demo", "demo-seeds", "cdd11", "allweather"}
    for g in grids:
        grid = load_grid(g)
        assert len(grid.models) >= 3 and grid.kernel == "m2restore"
    demo, seeds = load_grid(grids[0].parent / "demo.yaml"), load_grid(grids[0].parent / "demo-seeds.yaml")
    assert seeds.seeds == [0, 1, 2] and demo.seeds == [0]
    assert seeds.parameters == demo.parameters and seeds.models == demo.models  # the goal runs the demo's budget
