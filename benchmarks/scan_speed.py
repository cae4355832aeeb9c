"""Speed and memory of the selective scan on the CPU: fast PyTorch path vs autograd through the reference loop.

For each (b, d, L, N) it times, in one run and side by side (best of ``--reps``), forward (no grad) and
forward+backward of
- ``numba_cpu`` (:func:`m2restore.ops.selective_scan_numba`, when numba imports) and ``torch_fast``
  (:func:`m2restore.ops.selective_scan_torch`), the two fast CPU paths;
- autograd through :func:`m2restore.ops.selective_scan_ref`, the sequential loop over ``unbind`` slices;
- one elementwise ``exp`` over a (b, d, L, N) tensor, the floor of an implementation that materialises it;
and the peak extra resident memory of forward+backward, measured in a fresh subprocess per path (the kernel's
peak-RSS counter is reset just before the call), in units of one (b, d, L, N) float32 state.
Inputs are Mamba's: B, C (b, N, L), D, z, delta_bias and softplus. Wall times are the headline; CPU times
(process time, summed over threads) are printed too, because on a shared machine they are much less noisy.

Usage::

    python benchmarks/scan_speed.py                 # (2, 192, 1024, 16) and (1, 768, 4096, 16)
    python benchmarks/scan_speed.py --quick         # small sizes, a smoke test
    python benchmarks/scan_speed.py --threads 2 --json benchmarks/results/scan_speed.json
    python benchmarks/scan_speed.py --chunk-sweep   # time the fast path for several chunk sizes

Timings are only comparable within one run: other processes on the machine slow every row.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from m2restore.ops import selective_scan_numba, selective_scan_ref, selective_scan_torch

SIZES = [(2, 192, 1024, 16), (1, 768, 4096, 16)]
QUICK_SIZES = [(1, 64, 256, 16), (2, 48, 400, 16)]
ss = importlib.import_module("m2restore.ops.selective_scan")  # the module (the package re-exports the function)
PATHS = {"torch_fast": selective_scan_torch, "autograd_ref": selective_scan_ref}
if ss._numba_module() is not None:
    PATHS = {"numba_cpu": selective_scan_numba, **PATHS}


def make_inputs(b: int, d: int, L: int, N: int, seed: int = 0) -> list[torch.Tensor]:
    """Mamba-like float32 inputs (u, delta, A, B, C, D, z, delta_bias), all requiring grad."""
    g = torch.Generator().manual_seed(seed)
    u, delta, z = (torch.randn(b, d, L, generator=g) for _ in range(3))
    A = -torch.arange(1, N + 1, dtype=torch.float32).repeat(d, 1) * torch.rand(d, 1, generator=g)  # (d, N)
    B, C = (torch.randn(b, N, L, generator=g) for _ in range(2))
    D, delta_bias = torch.randn(d, generator=g), torch.randn(d, generator=g) - 3  # softplus(-3) ~ 0.05
    return [t.requires_grad_() for t in (u, delta, A, B, C, D, z, delta_bias)]


def call(fn: Callable, inputs: list[torch.Tensor], backward: bool) -> None:
    """One forward (no grad) or one forward+backward of a scan implementation."""
    if backward:
        fn(*inputs, delta_softplus=True).sum().backward()
        for t in inputs:
            t.grad = None
    else:
        with torch.no_grad():
            fn(*inputs, delta_softplus=True)


def best_ms(fn: Callable[[], None], reps: int) -> tuple[float, float]:
    """Best wall time and best CPU (process) time of ``reps`` calls after one warm-up call, in milliseconds."""
    fn()
    wall, cpu = [], []
    for _ in range(reps):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return 1e3 * min(wall), 1e3 * min(cpu)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident memory since the last reset (VmHWM), else since the start of the process."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_memory_child(path: str, size: tuple[int, ...], threads: int) -> dict[str, float]:
    """In this (fresh) process: peak extra RSS of forward+backward of ``path`` at ``size``, in bytes."""
    torch.set_num_threads(threads)
    call(PATHS[path], make_inputs(1, 8, 16, 4), backward=True)  # load kernels and allocator state
    inputs = make_inputs(*size)
    base = rss_bytes()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    call(PATHS[path], inputs, backward=True)
    return {"peak_extra_bytes": peak_rss_bytes() - base, "hwm_reset": reset}


def measure_memory(path: str, size: tuple[int, ...], threads: int) -> dict[str, float]:
    """Run :func:`measure_memory_child` in a fresh interpreter so that earlier runs do not hide the peak."""
    cmd = [sys.executable, __file__, "--memory-child", json.dumps({"path": path, "size": size, "threads": threads})]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def exp_floor_ms(size: tuple[int, ...], reps: int) -> float:
    """One elementwise exp over a (b, d, L, N) float32 tensor into a preallocated output."""
    x, out = torch.randn(*size), torch.empty(*size)
    return best_ms(lambda: torch.exp(x, out=out), reps)[0]


def bench_size(size: tuple[int, ...], reps: int, threads: int, memory: bool) -> list[dict]:
    """All rows for one (b, d, L, N)."""
    b, d, L, N = size
    inputs = make_inputs(*size)
    state_bytes = b * d * L * N * 4
    rows = [{"size": size, "path": "exp floor", "fwd_ms": exp_floor_ms(size, reps)}]
    for path, fn in PATHS.items():
        slow = path == "autograd_ref" and b * d * L * N > 4e6
        n = max(1, reps // 3) if slow else reps  # the loop takes seconds at the large size
        fwd = best_ms(functools.partial(call, fn, inputs, backward=False), n)
        fwdbwd = best_ms(functools.partial(call, fn, inputs, backward=True), n)
        row = {
            "size": size,
            "path": path,
            "fwd_ms": fwd[0],
            "fwdbwd_ms": fwdbwd[0],
            "fwd_cpu_ms": fwd[1],
            "fwdbwd_cpu_ms": fwdbwd[1],
        }
        if memory:
            peak = measure_memory(path, size, threads)["peak_extra_bytes"]
            row.update(peak_extra_mb=peak / 2**20, peak_in_states=peak / state_bytes)
        rows.append(row)
    return rows


def chunk_sweep(size: tuple[int, ...], reps: int) -> list[tuple[int, int, float]]:
    """Fast-path forward+backward time for several chunk budgets: (elements per chunk, steps T, ms)."""
    b, d, L, N = size
    inputs, default, results = make_inputs(*size), ss._CHUNK_ELEMENTS, []
    try:
        for budget in (1 << 15, 1 << 16, 1 << 17, 1 << 18, 1 << 19, 1 << 20, 1 << 21):
            ss._CHUNK_ELEMENTS = budget
            ms = best_ms(lambda: call(selective_scan_torch, inputs, backward=True), reps)[0]
            results.append((budget, ss._chunk_length(b, d, N, L), ms))
    finally:
        ss._CHUNK_ELEMENTS = default
    return results


def markdown(rows: list[dict]) -> str:
    """Rows as a Markdown table plus the ratios measured in the same run."""

    def fmt(v: float | None, spec: str) -> str:
        return format(v, spec) if isinstance(v, float) else "-"

    lines = [
        (
            "| (b, d, L, N) | path | forward ms | fwd+bwd ms | forward CPU ms | fwd+bwd CPU ms | peak extra MB "
            "| peak / one state |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['path']} | {fmt(r['fwd_ms'], '.1f')} | {fmt(r.get('fwdbwd_ms'), '.1f')} | "
            f"{fmt(r.get('fwd_cpu_ms'), '.1f')} | {fmt(r.get('fwdbwd_cpu_ms'), '.1f')} | "
            f"{fmt(r.get('peak_extra_mb'), '.1f')} | {fmt(r.get('peak_in_states'), '.2f')} |"
        )
    lines += [
        "",
        "| (b, d, L, N) | path | fwd speed-up vs autograd loop | fwd+bwd speed-up | same, CPU time | fwd+bwd / exp |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for size in dict.fromkeys(r["size"] for r in rows):
        by = {r["path"]: r for r in rows if r["size"] == size}
        ref, floor = by["autograd_ref"], by["exp floor"]["fwd_ms"]
        for path in (p for p in PATHS if p != "autograd_ref"):
            fast = by[path]
            lines.append(
                f"| {size} | {path} | {ref['fwd_ms'] / fast['fwd_ms']:.1f}x | "
                f"{ref['fwdbwd_ms'] / fast['fwdbwd_ms']:.1f}x | {ref['fwdbwd_cpu_ms'] / fast['fwdbwd_cpu_ms']:.1f}x | "
                f"{fast['fwdbwd_ms'] / floor:.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per measurement (best is kept)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--chunk-sweep", action="store_true", help="also time the fast path for several chunk sizes")
    parser.add_argument("--json", type=Path, help="write the rows and the environment to this file")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        job = json.loads(args.memory_child)
        print(json.dumps(measure_memory_child(job["path"], tuple(job["size"]), job["threads"])))
        return 0
    torch.set_num_threads(args.threads)
    env = {
        "torch": torch.__version__,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_start": os.getloadavg()[0],
        "dtype": "float32",
    }
    rows = []
    for size in QUICK_SIZES if args.quick else SIZES:
        rows += bench_size(size, args.reps, args.threads, memory=not args.no_memory)
    env["load_avg_end"] = os.getloadavg()[0]
    print(
        f"selective scan on CPU, float32, {args.threads} thread(s), torch {torch.__version__}, "
        f"load average {env['load_avg_start']:.1f} -> {env['load_avg_end']:.1f}\n"
    )
    print(markdown(rows))
    if args.chunk_sweep:
        print("\n| (b, d, L, N) | chunk budget (elements) | T (steps) | fast fwd+bwd ms |\n|---|---:|---:|---:|")
        for size in QUICK_SIZES if args.quick else SIZES:
            for budget, T, ms in chunk_sweep(size, args.reps):
                print(f"| {size} | {budget} | {T} | {ms:.1f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
