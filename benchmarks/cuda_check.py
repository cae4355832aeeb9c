"""One prepared check of the selective scan on a CUDA machine: parity and speed (exits cleanly without CUDA).

1. Parity of the ``torch_fast`` path on CUDA against the sequential reference on the CPU in float64, for every
   B/C layout, with D, z, delta_bias and softplus: values, the last state and all gradients (float32 and float64).
2. Speed at (b, d, L, N) = (2, 192, 1024, 16) and (1, 768, 4096, 16): forward and forward+backward of
   ``torch_fast``, of autograd through the reference loop, of one ``exp`` over (b, d, L, N) and, when ``mamba_ssm``
   imports, of its CUDA kernel.
3. When ``mamba_ssm`` imports: parity of its ``selective_scan_fn`` against ``torch_fast`` (float32 and bf16), and
   of ``Mamba`` (its fused path on CUDA) against the same weights run through our CPU path.

Usage::

    python benchmarks/cuda_check.py [--json results.json] [--quick]

Exit status: 0 when every parity check passes or when there is no CUDA device, 1 when a check fails.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from m2restore.ops import Mamba, scan_backend, selective_scan, selective_scan_ref, selective_scan_torch

ss = importlib.import_module("m2restore.ops.selective_scan")  # the module (the package re-exports the function)
LAYOUTS = [("var", "var"), ("const", "var"), ("g2", "g2"), ("var", "g4")]
SIZES = [(2, 192, 1024, 16), (1, 768, 4096, 16)]


def make_inputs(b: int, d: int, L: int, N: int, layouts: tuple[str, str], seed: int = 0) -> list[torch.Tensor]:
    """CPU float64 inputs (u, delta, A, B, C, D, z, delta_bias) for the given B/C layouts."""
    g = torch.Generator().manual_seed(seed)

    def operand(layout: str) -> torch.Tensor:
        shape = {"const": (d, N), "var": (b, N, L)}.get(layout) or (b, int(layout[1:]), N, L)
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    u, delta, z = (torch.randn(b, d, L, generator=g, dtype=torch.float64) for _ in range(3))
    A = -torch.rand(d, N, generator=g, dtype=torch.float64) * 4
    D, bias = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64) - 2
    return [u, delta, A, operand(layouts[0]), operand(layouts[1]), D, z, bias]


def run_with_grads(fn: Callable, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """[out, last_state, grads of the 8 inputs] for a weighted sum of the output, all moved to the CPU in float64."""
    inputs = [t.detach().requires_grad_() for t in inputs]
    out, last = fn(*inputs, delta_softplus=True, return_last_state=True)
    weight = torch.linspace(-1, 1, out.numel(), device=out.device, dtype=torch.float32).reshape(out.shape)
    grads = torch.autograd.grad((out.float() * weight).sum(), inputs)
    return [t.detach().double().cpu() for t in (out, last, *grads)]


def max_rel_err(got: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
    """Largest error over all tensors, relative to each reference tensor's largest magnitude."""
    return max(((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item() for a, b in zip(got, ref))


def parity_checks(dev: torch.device, quick: bool) -> list[dict]:
    """torch_fast on CUDA (float64, float32) and mamba_ssm's kernel (float32, bf16) against the CPU reference."""
    rows = []
    b, d, L, N = (2, 16, 37, 4) if quick else (2, 64, 301, 16)
    for layouts in LAYOUTS:
        cpu = make_inputs(b, d, L, N, layouts)
        ref = run_with_grads(selective_scan_ref, cpu)
        for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 2e-4)):
            cuda = [t.to(dev, dtype) for t in cpu]
            err = max_rel_err(run_with_grads(selective_scan_torch, cuda), ref)
            rows.append({"check": f"torch_fast cuda {dtype} {layouts}", "max_rel_err": err, "ok": err < tol})
        if ss._mamba_ssm_scan_fn() is not None:
            for dtype, tol in ((torch.float32, 2e-3), (torch.bfloat16, 5e-2)):
                cuda = [t.to(dev, torch.float32 if i in (2, 5, 7) else dtype) for i, t in enumerate(cpu)]
                mine = run_with_grads(lambda *a, **k: selective_scan(*a, **k, backend="torch_fast"), cuda)
                theirs = run_with_grads(lambda *a, **k: selective_scan(*a, **k, backend="mamba_ssm_cuda"), cuda)
                err = max_rel_err(theirs, mine)
                rows.append(
                    {"check": f"mamba_ssm_cuda vs torch_fast {dtype} {layouts}", "max_rel_err": err, "ok": err < tol}
                )
    return rows


def mamba_module_check(dev: torch.device) -> list[dict]:
    """Our Mamba on CUDA (mamba_ssm fused path if it imports) against the same weights on the CPU."""
    torch.manual_seed(0)
    m = Mamba(d_model=96).to(dev)
    x = torch.randn(2, 256, 96, device=dev)
    path = m.path(x)
    with torch.no_grad():
        out_cuda = m(x).double().cpu()
        out_cpu = m.cpu()(x.cpu()).double()
    err = ((out_cuda - out_cpu).abs().max() / out_cpu.abs().max()).item()
    return [{"check": f"Mamba on CUDA ({path}) vs CPU torch_fast", "max_rel_err": err, "ok": err < 2e-3}]


def timed_ms(fn: Callable[[], None], reps: int) -> float:
    """Best of ``reps`` synchronised calls after one warm-up, in milliseconds."""
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best


def _call(inputs: list[torch.Tensor], backend: str, backward: bool) -> None:
    """One forward (no grad) or forward+backward through ``backend``."""
    if backward:
        selective_scan(*inputs, delta_softplus=True, backend=backend).sum().backward()
    else:
        with torch.no_grad():
            selective_scan(*inputs, delta_softplus=True, backend=backend)


def speed(dev: torch.device, quick: bool) -> list[dict]:
    """Forward and forward+backward times of every available path at the benchmark sizes (float32)."""
    rows = []
    paths = {"torch_fast": "torch_fast", "autograd_ref": "reference"}
    if ss._mamba_ssm_scan_fn() is not None:
        paths["mamba_ssm_cuda"] = "mamba_ssm_cuda"
    for size in SIZES[:1] if quick else SIZES:
        b, d, L, N = size
        inputs = [t.to(dev, torch.float32).requires_grad_() for t in make_inputs(b, d, L, N, ("var", "var"))]
        x = torch.randn(b, d, L, N, device=dev)
        rows.append({"size": size, "path": "exp floor", "fwd_ms": timed_ms(functools.partial(torch.exp, x), 5)})
        for name, backend in paths.items():
            reps = 1 if name == "autograd_ref" else 5
            fwd, fwdbwd = (functools.partial(_call, inputs, backend, bwd) for bwd in (False, True))
            rows.append(
                {"size": size, "path": name, "fwd_ms": timed_ms(fwd, reps), "fwdbwd_ms": timed_ms(fwdbwd, reps)}
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write all rows to this file")
    parser.add_argument("--quick", action="store_true", help="smaller parity case and only the first size")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("cuda_check: no CUDA device here; nothing to check (run this on a GPU machine).")
        return 0
    dev = torch.device("cuda")
    print(
        f"device {torch.cuda.get_device_name(dev)}, torch {torch.__version__}, "
        f"scan backend for CUDA float32: {scan_backend(torch.empty(1, device=dev))}"
    )
    checks = parity_checks(dev, args.quick) + mamba_module_check(dev)
    print("\n| check | max rel. error | ok |\n|---|---:|---|")
    for r in checks:
        print(f"| {r['check']} | {r['max_rel_err']:.2e} | {'yes' if r['ok'] else 'NO'} |")
    timings = speed(dev, args.quick)
    print("\n| (b, d, L, N) | path | forward ms | fwd+bwd ms |\n|---|---|---:|---:|")
    for r in timings:
        bwd = f"{r['fwdbwd_ms']:.2f}" if "fwdbwd_ms" in r else "-"
        print(f"| {r['size']} | {r['path']} | {r['fwd_ms']:.2f} | {bwd} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"device": torch.cuda.get_device_name(dev), "checks": checks, "timings": timings}, indent=1)
        )
    return 0 if all(r["ok"] for r in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
