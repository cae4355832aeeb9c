"""``make demo`` / ``m2restore demo``: the whole comparison on a laptop CPU, offline, in under 20 minutes.

Stages (one progress line each, with the elapsed time):

1. build mini CDD-11 from scikit-image's bundled photographs (``data/mini-cdd11``; reused when already built);
2. train the tiny CLIP degradation prior on it for a fixed number of steps (``data/clip-prior-tiny``; reused);
3. run the ``demo`` grid (``benchmarks/grids/demo.yaml``): notebook 09 under papermill for m2restore_tiny,
   adair_tiny and promptir_tiny with one identical budget, each trained, profiled and evaluated;
4. build the tables and figures from the runs' JSON records into ``benchmarks/results/demo``.

The same command runs the 3-seed goal measurement on the same data and prior::

    m2restore demo --grid benchmarks/grids/demo-seeds.yaml --out benchmarks/results/demo-seeds
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

from ..config import ConfigError, atomic_write_text

DEFAULT_GRID = "benchmarks/grids/demo.yaml"
PRIOR_STEPS = 600  # tiny CLIP prior budget (steps: the same prior on any machine); part of the 20-minute total
PRIOR_MINUTES = 0.0  # optional wall-clock cap on the prior (0: none)
_NOT_RECIPE = ("out", "threads", "progress", "resume", "device")  # TrainConfig fields that do not change the prior


class _Progress:
    """Prints ``[demo k/n mm:ss] message`` lines and keeps the elapsed time at the end of every stage."""

    def __init__(self, stages: int) -> None:
        self.stages, self.start = stages, time.perf_counter()
        self.marks: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, stage: int, message: str) -> None:
        e = self.elapsed()
        print(f"[demo {stage}/{self.stages} {e // 60:02.0f}:{e % 60:02.0f}] {message}", flush=True)

    def mark(self, name: str) -> None:
        self.marks[name] = round(self.elapsed(), 1)


def build_data(root: Path, size: int, seed: int = 0) -> Path:
    """Mini CDD-11 at ``root`` (the data module reuses an identical existing build)."""
    from ..data import make_mini_cdd11

    return make_mini_cdd11(root, size=size, seed=seed)


def train_tiny_prior(data: Path, out: Path, minutes: float, threads: int,
                     steps: int = PRIOR_STEPS) -> tuple[Path, dict]:
    """Train the tiny CLIP prior (default recipe of ``m2restore.clip.TrainConfig``) for ``steps`` and/or ``minutes``.

    A finished prior in ``out`` trained on the same data with the same budget and recipe is reused; one trained
    otherwise is replaced (``out`` is a cache of this function). Returns (checkpoint, summary).
    """
    from ..clip import TrainConfig, train_prior

    cfg = dataclasses.replace(TrainConfig(), data=str(data), out=str(out), source="tiny", steps=steps,
                              minutes=minutes, threads=threads, progress=False, resume="")
    checkpoint, summary_file = out / "prior.pt", out / "summary.json"
    if checkpoint.is_file() and summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        done = summary.get("config", {})
        wanted = json.loads(json.dumps(dataclasses.asdict(cfg)))  # as stored: tuples become lists
        if all(done.get(k) == v for k, v in wanted.items() if k not in _NOT_RECIPE):
            return checkpoint, summary
        print(f"{out}: the prior there was trained with another recipe or budget; training a new one", flush=True)
    summary = train_prior(cfg)
    return Path(summary["checkpoint"]), summary


def snapshot_records(runs: Path, dest: Path) -> int:
    """Copy every run's ``record.json``, ``samples.npz`` and executed ``run.ipynb`` from ``runs`` to ``dest``.

    ``runs/`` also holds checkpoints and is not versioned (a committed finished run would make the next
    ``make demo`` skip it); ``records/`` is small and versioned, and
    ``m2restore bench report --runs <out>/records`` rebuilds the tables and figures from it. Returns the number of
    records copied.
    """
    from .records import find_records

    n = 0
    for record in find_records(runs):
        target = dest / record.parent.relative_to(runs)
        target.mkdir(parents=True, exist_ok=True)
        for name in (record.name, "samples.npz", "run.ipynb"):
            if (record.parent / name).is_file():
                shutil.copy2(record.parent / name, target / name)
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``m2restore demo`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="m2restore demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/demo", help="results folder")
    parser.add_argument("--grid", default=DEFAULT_GRID, help="grid YAML (demo.yaml; demo-seeds.yaml for 3 seeds)")
    parser.add_argument("--data", default="data/mini-cdd11", help="where mini CDD-11 is built (reused)")
    parser.add_argument("--size", type=int, default=128, help="mini CDD-11 crop size")
    parser.add_argument("--prior-dir", default="data/clip-prior-tiny", help="where the tiny CLIP prior goes (reused)")
    parser.add_argument("--prior-steps", type=int, default=PRIOR_STEPS, help="CLIP prior training steps")
    parser.add_argument("--prior-minutes", type=float, default=PRIOR_MINUTES,
                        help="optional wall-clock cap on the CLIP prior's training (0: none)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for the prior (runs: grid 'threads')")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a shared notebook parameter of the grid (e.g. budget_steps=50)")
    parser.add_argument("--force", action="store_true", help="rerun finished runs (old ones are archived)")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except ConfigError as e:
        print(f"m2restore demo: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from .cli import find_grid, parse_sets
    from .report import build_report
    from .runner import DatasetSpec, load_grid, run_grid

    grid = load_grid(find_grid(args.grid))
    extra = parse_sets(args.overrides)
    out = Path(args.out)
    progress = _Progress(4)
    load_before = os.getloadavg()[0]
    if load_before > 0.5 * (os.cpu_count() or 1):
        progress(1, f"note: load average {load_before:.1f} on {os.cpu_count()} cores before starting; other processes "
                    "share the CPU, so every stage will take longer than on an idle machine")

    progress(1, f"building mini CDD-11 from scikit-image's photographs -> {args.data}")
    data = build_data(Path(args.data), args.size)
    n_clean = sum(1 for _ in (data / "train" / "clear").glob("*.png"))
    n_test = sum(1 for _ in (data / "test" / "clear").glob("*.png"))
    progress(1, f"mini CDD-11 ready: {n_clean} train / {n_test} test clean crops, each degraded 11 ways")
    progress.mark("data")

    cap = f", at most {args.prior_minutes:g} min" if args.prior_minutes else ""
    progress(2, f"training the tiny CLIP degradation prior ({args.prior_steps} steps{cap}) -> {args.prior_dir}")
    prior, summary = train_tiny_prior(data, Path(args.prior_dir), args.prior_minutes, args.threads, args.prior_steps)
    acc = summary.get("eval", {}).get("accuracy")
    progress(2, f"prior ready: {summary.get('steps')} steps" + (f", zero-shot test accuracy {acc:.1%}" if acc else ""))
    progress.mark("prior")

    grid.datasets = [DatasetSpec(d.name, str(data)) if d.name == "mini-cdd11" else d for d in grid.datasets]
    runs = len(grid.runs())
    progress(3, f"grid '{grid.name}': {runs} runs ({', '.join(grid.models)} x seeds {grid.seeds}), identical budget "
                f"{ {**grid.parameters, **extra} }")
    outcomes = run_grid(grid, out, extra={"prior_checkpoint": str(prior), **extra}, force=args.force,
                        log=lambda line: progress(3, line))
    progress.mark("runs")

    progress(4, f"tables and figures from the JSON records -> {out}")
    rep = build_report(out / "runs", out)
    snapshot_records(out / "runs", out / "records")
    for dataset_table in sorted((out / "tables").glob("*_summary.md")):
        print(dataset_table.read_text())
    progress.mark("report")
    info = {
        "grid": grid.name, "stage_end_s": progress.marks, "total_s": progress.marks["report"],
        "cpu_count": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
        "prior": {k: summary.get(k) for k in ("checkpoint", "steps", "minutes")} | {"accuracy": acc},
        "data": str(data), "runs": {o.run_id: {"status": o.status, "wall_s": round(o.wall_s, 1)} for o in outcomes},
    }
    atomic_write_text(out / "demo.json", json.dumps(info, indent=2) + "\n")
    progress(4, f"done: {rep.n_ok} runs finished, {len(rep.failed)} failed; report {out / 'report.md'}")
    return int(any(o.status == "failed" for o in outcomes))
