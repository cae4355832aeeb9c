"""One cost table for every registered model: parameters, FLOPs, latency and peak memory (CSV + Markdown).

Parameters, FLOPs and memory come from :func:`m2restore.eval.profile.profile_model` (see its module docstring for
what each column means and how memory is measured on CPU). Latencies come from
:func:`m2restore.eval.profile.compare_latency`: every model is built and kept in memory, then each round times one
step of every model in a rotating order, so a change in machine load hits all models alike; the ratio column is the
median over rounds of a model's time over the reference model's time in the same round.

Usage::

    python benchmarks/profile_models.py                                  # all models, 256 px, CPU
    python benchmarks/profile_models.py --models adair_tiny promptir_tiny --size 64 --repeats 3
    python benchmarks/profile_models.py --device cuda --size 256 --backward --batch 4
    python benchmarks/profile_models.py --models m2restore adair --reference adair --repeats 9
    python benchmarks/profile_models.py --out benchmarks/results/profile  # default folder

Writes ``<out>/profile_<device>_<size>px[_train].csv`` and ``.md`` (the file name records the environment).
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

from m2restore.eval.profile import markdown_table, profile_many
from m2restore.registry import list_models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", help="preset names (default: every registered model)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--reference", default="adair", help="model the latency ratio is taken to (default adair)")
    parser.add_argument("--backward", action="store_true", help="profile forward + backward (a training step)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads before profiling")
    parser.add_argument("--out", default="benchmarks/results/profile", help="output folder")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    names = args.models or list_models()
    unknown = sorted(set(names) - set(list_models()))
    if unknown:
        print(f"unknown model(s) {unknown}; registered: {', '.join(list_models())}", file=sys.stderr)
        return 2
    if args.reference not in names:
        names.append(args.reference)
    rows = profile_many(names, size=args.size, device=args.device, rounds=args.repeats, batch=args.batch,
                        backward=args.backward, reference=args.reference)
    for row in rows:
        print(f"{row['model']:<26} {row['params_trainable']:>12,} trainable  {row['gflops_per_image']:8.2f} GFLOPs  "
              f"{row['latency_ms']:9.1f} ms  x{row['latency_ratio']:.2f} {args.reference}  "
              f"{row['peak_mem_mb']:8.1f} MiB", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = args.device.replace(":", "")
    stem = out / f"profile_{device}_{args.size}px{'_train' if args.backward else ''}"
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    title = f"Model cost, {args.size}x{args.size} px, {device}{' (training step)' if args.backward else ''}"
    stem.with_suffix(".md").write_text(markdown_table(rows, title))
    print(f"wrote {stem}.csv and {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
