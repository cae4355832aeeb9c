"""Cost of a model: parameters (trainable and frozen), FLOPs, median latency and peak memory, on CPU or CUDA.

Python API::

    from m2restore.eval.profile import profile_model
    row = profile_model("adair_tiny", size=128, repeats=5)             # a registered preset (+ config overrides)
    row = profile_model(my_model, size=256, device="cuda", backward=True)  # any nn.Module taking (B, 3, H, W)
    compare_latency(["m2restore", "adair"], size=256, rounds=7, reference="adair")  # side by side, interleaved

Command line: ``m2restore profile --model NAME [--size 256] [--device cpu] [--set dim=32] [--backward]``, or
``m2restore profile --model m2restore adair promptir --reference adair`` for one table timed side by side.

What each number means:

- ``flops``: counted by ``torch.utils.flop_counter.FlopCounterMode`` over one step (2 per multiply-add, for
  matmuls, convolutions and attention); element-wise ops, normalisation and FFTs are not counted. Its formula for
  ``convolution_backward`` ignores ``groups`` (a depthwise 3x3 conv's weight gradient counts C times too much), so
  it is replaced here: each requested gradient (input, weight) costs one forward convolution.
- ``latency_ms``: median wall time of ``repeats`` steps after ``warmup`` steps (CUDA is synchronised).
  ``compare_latency`` times several models in interleaved rounds and gives each one's median per-round ratio to a
  reference model: the figure to quote when comparing models on a machine whose load may change.
- ``peak_mem_mb``: on CUDA ``torch.cuda.max_memory_allocated`` during one step (weights, input, activations,
  gradients). On CPU PyTorch keeps no allocator statistics, so a ``TorchDispatchMode`` adds up the storages of every
  tensor an ATen op returns while they are alive (freed when garbage-collected), on top of the weights, buffers
  and input: the same quantity, minus allocator slack and library scratch space (e.g. oneDNN workspaces).
- A step is one forward in ``torch.inference_mode`` or, with ``backward=True``, forward + backward of the
  mean output (a training step without the optimizer).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

MB = 2**20


class LiveTensorBytes(TorchDispatchMode):
    """Track the peak of bytes held by tensor storages that ATen ops create while the mode is active (CPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}  # storage data pointer -> bytes
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live:
                    self.live[key] = storage.nbytes()
                    self.current += storage.nbytes()
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(storage, self._release, key)
        return out


def _conv_backward_flop(
    grad_out_shape: list[int], x_shape: list[int], w_shape: list[int], _bias: Any, _stride: Any, _padding: Any,
    _dilation: Any, transposed: bool, _output_padding: Any, _groups: Any, output_mask: list[bool], **kwargs: Any,
) -> int:
    """FLOPs of ``aten.convolution_backward``: one forward-sized convolution per requested gradient, groups-aware."""
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def flop_counter() -> FlopCounterMode:
    """A quiet ``FlopCounterMode`` with the corrected convolution-backward formula."""
    return FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop})


def _resolve(name_or_model: str | nn.Module, overrides: dict[str, Any]) -> tuple[str, nn.Module]:
    if isinstance(name_or_model, nn.Module):
        if overrides:
            raise TypeError("profile_model: config overrides apply to a preset name, not to a built model")
        return getattr(name_or_model, "preset_name", type(name_or_model).__name__), name_or_model
    from ..registry import build_model

    return name_or_model, build_model(name_or_model, **overrides)


def _prepare(
    name_or_model: str | nn.Module, size: int, device: str, batch: int, backward: bool, overrides: dict[str, Any],
) -> tuple[str, nn.Module, Callable[[], None], torch.Tensor]:
    """Build (or take) the model, move it to ``device``; return its name, the model, one step and its input."""
    name, model = _resolve(name_or_model, overrides)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"profile_model: device '{device}' requested but CUDA is not available here")
    model = model.to(dev).train(backward)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=gen).to(dev)  # (B, 3, S, S)

    def step() -> None:
        if backward:
            model(x).mean().backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode():
                model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    return name, model, step, x


def _timed(step: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def profile_model(
    name_or_model: str | nn.Module, size: int = 256, device: str = "cpu", repeats: int = 5, batch: int = 1,
    warmup: int = 1, backward: bool = False, **overrides: Any,
) -> dict[str, Any]:
    """Profile a registered preset (with config ``overrides``) or a model on a random (batch, 3, size, size) input.

    Args:
        name_or_model: a preset name from ``m2restore.list_models()`` or an ``nn.Module``.
        size: square input side in pixels.
        device: 'cpu', 'cuda' or 'cuda:N'.
        repeats: timed steps; the latency is their median (0: no timing, latency fields are NaN).
        batch: images per step.
        warmup: untimed steps before timing (the FLOP-counting step comes first in addition).
        backward: time forward + backward instead of an inference forward.
        **overrides: config fields of the preset, e.g. ``dim=32``.

    Returns:
        A flat dict (one table row): model, device, size, batch, mode, params_trainable, params_frozen, flops,
        gflops_per_image, latency_ms, latency_ms_min, peak_mem_mb, mem_method, threads, torch.
    """
    name, model, step, x = _prepare(name_or_model, size, device, batch, backward, overrides)
    dev = torch.device(device)
    with flop_counter() as counter:
        step()
    flops = counter.get_total_flops()

    static = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers(), x])
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        step()
        peak, mem_method = torch.cuda.max_memory_allocated(dev), "cuda.max_memory_allocated"
    else:
        with LiveTensorBytes() as tracker:
            step()
        peak, mem_method = static + tracker.peak, "live tensor storages (dispatch mode)"

    times = []
    if repeats:
        for _ in range(warmup):
            step()
        times = [_timed(step) for _ in range(repeats)]

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return {
        "model": name, "device": str(dev), "size": size, "batch": batch,
        "mode": "forward+backward" if backward else "inference",
        "params_trainable": trainable, "params_frozen": frozen, "flops": flops,
        "gflops_per_image": flops / batch / 1e9,
        "latency_ms": statistics.median(times) * 1e3 if times else float("nan"),
        "latency_ms_min": min(times) * 1e3 if times else float("nan"),
        "repeats": repeats, "peak_mem_mb": peak / MB, "mem_method": mem_method,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
    }


def compare_latency(
    models: Sequence[str | nn.Module], size: int = 256, device: str = "cpu", rounds: int = 7, batch: int = 1,
    warmup: int = 1, backward: bool = False, reference: str | None = None,
) -> dict[str, dict[str, float]]:
    """Latencies of several models timed side by side: one step of each per round, in a rotating order.

    Timing one model after another lets a change in machine load (another process starting) land on one model
    only; interleaving spreads it over all of them, and a per-round ratio cancels what the round shares.

    Args:
        models: preset names or modules (all kept in memory at once).
        size, device, batch, backward: as in :func:`profile_model`.
        rounds: timed steps per model.
        warmup: untimed steps per model before the first round.
        reference: a model name; each model's ``ratio`` is the median over rounds of its time over the
            reference's time in the same round.

    Returns:
        ``{name: {"latency_ms": median, "latency_ms_min": min, "ratio": median per-round ratio (NaN without a
        reference), "rounds": rounds}}``.
    """
    prepared = [_prepare(m, size, device, batch, backward, {}) for m in models]
    names = [p[0] for p in prepared]
    if reference is not None and reference not in names:
        raise ValueError(f"compare_latency: reference '{reference}' is not among the models {names}")
    for _, _, step, _ in prepared:
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(prepared)
        for name, _, step, _ in prepared[k:] + prepared[:k]:  # rotate who goes first
            times[name].append(_timed(step))
    out = {}
    for name in names:
        ratio = (statistics.median(t / ref for t, ref in zip(times[name], times[reference]))
                 if reference is not None else float("nan"))
        out[name] = {"latency_ms": statistics.median(times[name]) * 1e3,
                     "latency_ms_min": min(times[name]) * 1e3, "ratio": ratio, "rounds": rounds}
    return out


def profile_many(
    models: Sequence[str | nn.Module], size: int = 256, device: str = "cpu", rounds: int = 5, batch: int = 1,
    backward: bool = False, reference: str | None = None,
) -> list[dict[str, Any]]:
    """One row per model: :func:`profile_model`'s costs, latencies from :func:`compare_latency` (interleaved).

    Each row gains ``latency_ratio`` (median per-round ratio to ``reference``; NaN without one) and ``reference``.
    """
    built = [_resolve(m, {})[1] for m in models]  # build each preset once for both passes
    rows = [profile_model(m, size=size, device=device, repeats=0, batch=batch, backward=backward) for m in built]
    timing = compare_latency(built, size=size, device=device, rounds=rounds, batch=batch, backward=backward,
                             reference=reference)
    for row in rows:
        t = timing[row["model"]]
        row.update(latency_ms=t["latency_ms"], latency_ms_min=t["latency_ms_min"], latency_ratio=t["ratio"],
                   repeats=rounds, reference=reference or "")
    return rows


TABLE_COLUMNS = [  # (key, Markdown header, format)
    ("model", "model", "{}"),
    ("params_trainable", "trainable params", "{:,}"),
    ("params_frozen", "frozen params", "{:,}"),
    ("gflops_per_image", "GFLOPs / image", "{:.2f}"),
    ("latency_ms", "latency ms (median)", "{:.1f}"),
    ("latency_ms_min", "latency ms (min)", "{:.1f}"),
    ("latency_ratio", "latency / reference", "{:.2f}"),
    ("peak_mem_mb", "peak MiB", "{:.1f}"),
]


def markdown_table(rows: list[dict[str, Any]], title: str) -> str:
    """Markdown table of :func:`profile_many` rows, with a protocol line under the title."""
    import platform

    r0 = rows[0]
    ratio = f", ratio to {r0['reference']} per round" if r0.get("reference") else ""
    lines = [
        f"# {title}", "",
        (f"Input {r0['batch']}x3x{r0['size']}x{r0['size']}, {r0['mode']}, device {r0['device']} "
         f"({platform.processor() or platform.machine()}, {r0['threads']} threads), torch {r0['torch']}, "
         f"median of {r0['repeats']} interleaved rounds{ratio}. Peak memory: {r0['mem_method']}. FLOPs: "
         "torch.utils.flop_counter (matmul/conv/attention, 2 per multiply-add)."), "",
        "| " + " | ".join(h for _, h, _ in TABLE_COLUMNS) + " |",
        "|" + "|".join("---" if k == "model" else "---:" for k, _, _ in TABLE_COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(f.format(r[k]) for k, _, f in TABLE_COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def format_row(row: dict[str, Any]) -> str:
    """Human-readable multi-line summary of one ``profile_model`` result."""
    return "\n".join([
        (f"model            {row['model']}  ({row['mode']}, batch {row['batch']}, {row['size']}x{row['size']}, "
         f"{row['device']}, {row['threads']} threads)"),
        f"parameters       {row['params_trainable']:,} trainable, {row['params_frozen']:,} frozen",
        f"FLOPs            {row['gflops_per_image']:.2f} GFLOPs per image",
        f"latency          {row['latency_ms']:.1f} ms median of {row['repeats']} (min {row['latency_ms_min']:.1f})",
        f"peak memory      {row['peak_mem_mb']:.1f} MiB  [{row['mem_method']}]",
    ])


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``m2restore profile``."""
    parser = argparse.ArgumentParser(prog="m2restore profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", "--preset", dest="model", nargs="+", required=True,
                        help="registered preset name(s); several give one table timed side by side")
    parser.add_argument("--reference", help="with several models: latency ratios to this one (default: the last)")
    parser.add_argument("--size", type=int, default=256, help="square input side (default 256)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (rounds); the median is reported")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--backward", action="store_true", help="time forward + backward")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override of a single model, e.g. --set dim=32 (a leading 'model.' is accepted)")
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    args = parser.parse_args(argv)

    from ..config import ConfigError, apply_overrides
    from ..registry import build_from_config, get_config, list_models

    unknown = [m for m in args.model if m not in list_models()]
    if unknown:
        print(f"m2restore profile: unknown model(s) {unknown}; registered: {', '.join(list_models())}",
              file=sys.stderr)
        return 2
    if len(args.model) > 1:
        if args.overrides:
            print("m2restore profile: --set applies to a single --model", file=sys.stderr)
            return 2
        reference = args.reference or args.model[-1]
        names = args.model if reference in args.model else [*args.model, reference]
        rows = profile_many(names, size=args.size, device=args.device, rounds=args.repeats, batch=args.batch,
                            backward=args.backward, reference=reference)
        print(markdown_table(rows, f"Model cost, {args.size}x{args.size} px, {args.device}"))
        result: Any = rows
    else:
        try:
            sets = [s.removeprefix("model.") for s in args.overrides]
            model = build_from_config(args.model[0], apply_overrides(get_config(args.model[0]), sets))
        except ConfigError as e:
            print(f"m2restore profile: {e}", file=sys.stderr)
            return 2
        result = profile_model(model, size=args.size, device=args.device, repeats=args.repeats, batch=args.batch,
                               warmup=args.warmup, backward=args.backward)
        print(format_row(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0
