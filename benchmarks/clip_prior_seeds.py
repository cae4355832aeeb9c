"""Seed-to-seed spread of the tiny CLIP prior: train one prior per seed, then tabulate zero-shot accuracy.

Every seed runs ``m2restore clip train`` in a fresh process, one after the other (so each has the machine to itself
and its wall time means something), with the same arguments except ``--seed``, ``--out`` and ``--resume ''``.
A seed whose folder already holds a finished run (``summary.json``) of exactly the requested recipe is reused
rather than retrained; a folder with any other recipe is an error (pick another ``--out``).

Usage (the goal measurement of ``m2restore/clip/README.md``; the dataset comes from ``m2restore data mini-cdd11``)::

    m2restore data mini-cdd11 --out data/mini-cdd11-shared10 --clean-dir ../shared/data/clean --n-train 690 --n-test 46
    python benchmarks/clip_prior_seeds.py --data data/mini-cdd11-shared10 --out benchmarks/results/clip-prior-seeds \\
        --seeds 0 1 2 -- --threads 2 --eval-every 400

Arguments after ``--`` go to ``m2restore clip train`` unchanged. Writes ``<out>/seed<k>/`` (each training run with
its ``train.log``; checkpoints are not versioned), ``<out>/seeds.json`` and ``<out>/seeds.md`` (per seed and
mean +- sample std: accuracy overall and per type, train wall minutes, CPU minutes).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from m2restore.clip.cli import build_parser, train_config
from m2restore.config import atomic_write_text

# Config fields that name the run rather than the recipe; they may differ between a reused run and the request.
_RUN_FIELDS = ("out", "seed", "resume", "progress")


def _recipe(config: dict[str, Any]) -> dict[str, Any]:
    """A training config (as stored in summary.json) without its run-naming fields, JSON-normalised."""
    return {k: v for k, v in json.loads(json.dumps(config)).items() if k not in _RUN_FIELDS}


def run_seed(data: str, out: Path, seed: int, extra: list[str]) -> dict[str, Any]:
    """Train (or reuse) the prior of one seed in ``out``; return its summary plus the measured wall seconds."""
    argv = ["train", "--data", data, "--out", str(out), "--seed", str(seed), "--resume", "", "--no-progress", *extra]
    wanted = _recipe(dataclasses.asdict(train_config(build_parser().parse_args(argv))))
    summary_path = out / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        have = _recipe(summary["config"])
        if have != wanted or summary["config"]["seed"] != seed:
            diff = sorted(k for k in wanted if have.get(k) != wanted[k])
            raise SystemExit(f"{out} holds a run of another recipe (differs in {diff or ['seed']}); "
                             "choose another --out or move that folder away")
        print(f"seed {seed}: reusing {summary_path}", flush=True)
        return {**summary, "wall_s": None}
    if out.exists() and any(f.name != "train.log" for f in out.iterdir()):
        raise SystemExit(f"{out} exists without summary.json (an unfinished run?); move it away or resume it with "
                         f"`m2restore clip train ... --out {out} --resume auto`")
    print(f"seed {seed}: training into {out} (progress in {out / 'train.log'})", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(out / "train.log", "w") as log:
        subprocess.run([sys.executable, "-m", "m2restore", "clip", *argv], check=True, stdout=log)
    wall = time.perf_counter() - start
    return {**json.loads(summary_path.read_text()), "wall_s": wall}


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def markdown(rows: list[dict[str, Any]]) -> str:
    """Per-seed rows and a mean +- sample std row of accuracy (%) and time."""
    types = list(rows[0]["eval"]["per_type"])
    head = ["seed", "steps", "train min", "CPU min", f"{len(types)}-way", *types]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["config"]["seed"]), str(r["steps"]), f"{r['minutes']:.1f}", f"{r['cpu_minutes']:.1f}",
                 f"{100 * r['eval']['accuracy']:.1f}%", *(f"{100 * r['eval']['per_type'][t]:.1f}%" for t in types)]
        lines.append("| " + " | ".join(cells) + " |")
    stat = {k: _mean_std([float(r[k]) for r in rows]) for k in ("minutes", "cpu_minutes")}
    acc = _mean_std([100 * r["eval"]["accuracy"] for r in rows])
    per = {t: _mean_std([100 * r["eval"]["per_type"][t] for r in rows]) for t in types}
    cells = ["mean ± std", "", f"{stat['minutes'][0]:.1f}", f"{stat['cpu_minutes'][0]:.1f}",
             f"**{acc[0]:.1f} ± {acc[1]:.1f}%**", *(f"{m:.1f} ± {s:.1f}" for m, s in per.values())]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset root in CDD-11 layout (see m2restore data mini-cdd11)")
    parser.add_argument("--out", default="benchmarks/results/clip-prior-seeds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    forbidden = {"--seed", "--out", "--data", "--resume"} & set(extra)
    if forbidden:
        parser.error(f"{sorted(forbidden)} are set per seed by this script; drop them after --")

    out = Path(args.out)
    rows = [run_seed(args.data, out / f"seed{s}", s, extra) for s in args.seeds]
    accs = [100 * r["eval"]["accuracy"] for r in rows]
    mean, std = _mean_std(accs)
    record = {"data": args.data, "train_args": extra, "seeds": args.seeds, "accuracy_mean": mean,
              "accuracy_std": std, "accuracy_min": min(accs), "host_cpus": os.cpu_count(),
              "runs": [{k: r[k] for k in ("steps", "minutes", "cpu_minutes", "wall_s", "eval", "evals", "config")}
                       for r in rows]}
    table = markdown(rows)
    atomic_write_text(out / "seeds.json", json.dumps(record, indent=2))
    atomic_write_text(out / "seeds.md", table)
    print(table)
    print(f"zero-shot accuracy over seeds {args.seeds}: {mean:.1f} ± {std:.1f}% (min {min(accs):.1f}%); "
          f"wrote {out / 'seeds.json'} and {out / 'seeds.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
