"""Training-step time of the tiny presets under OpenMP's default and PASSIVE wait policies, side by side.

PyTorch's CPU kernels run on an OpenMP pool whose idle threads spin for a while after every parallel region
(libgomp's default). M2Restore's selective scan runs on numba's own worker threads in between, which then share
the cores with spinning OpenMP threads. ``OMP_WAIT_POLICY=PASSIVE`` makes idle OpenMP threads sleep at once. The
policy is read when the OpenMP runtime starts, so each measurement is a fresh subprocess; rounds alternate the
policies so that a change in machine load hits both alike, and the ratio is the median of per-round ratios.

Usage::

    python benchmarks/omp_wait_policy.py                              # tiny presets, 2 threads, batch 4, 64 px
    python benchmarks/omp_wait_policy.py --models m2restore_tiny --rounds 5 --steps 20 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = """
import json, statistics, sys, time, torch
import m2restore
name, threads, steps, batch, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = m2restore.build_model(name).train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
x, y = torch.rand(batch, 3, size, size), torch.rand(batch, 3, size, size)
times = []
for i in range(steps + 2):  # two warm-up steps (numba compiles or loads its cache on the first)
    t0 = time.perf_counter()
    loss = (model(x) - y).abs().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if i >= 2:
        times.append(time.perf_counter() - t0)
print(json.dumps({"median_s": statistics.median(times)}))
"""
POLICIES = ("default", "PASSIVE")


def measure(name: str, policy: str, args: argparse.Namespace) -> float:
    """Median training-step seconds of ``name`` in a fresh process with the given OMP_WAIT_POLICY."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", CHILD, name, str(args.threads), str(args.steps), str(args.batch),
                          str(args.size)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["median_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["m2restore_tiny", "adair_tiny", "promptir_tiny"])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (one process per policy each)")
    parser.add_argument("--steps", type=int, default=15, help="timed training steps per process")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    print(f"training step, batch {args.batch}, {args.size} px, {args.threads} threads, {args.steps} steps per "
          f"process, {args.rounds} alternating rounds; load average before: {os.getloadavg()[0]:.1f}")
    print("| model | default (ms) | PASSIVE (ms) | PASSIVE / default (per-round median) |\n|---|---:|---:|---:|")
    for name in args.models:
        times: dict[str, list[float]] = {p: [] for p in POLICIES}
        for r in range(args.rounds):
            for policy in (POLICIES if r % 2 == 0 else POLICIES[::-1]):
                times[policy].append(measure(name, policy, args))
        ratio = statistics.median(p / d for p, d in zip(times["PASSIVE"], times["default"]))
        print(f"| {name} | {1e3 * statistics.median(times['default']):.0f} | "
              f"{1e3 * statistics.median(times['PASSIVE']):.0f} | {ratio:.2f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
