"""Restore your own photos: tiled inference of any size on any device, and the ``m2restore restore`` command.

:func:`tiled_forward` cuts a large image into overlapping tiles, sends one tile at a time to the model's device and
blends the restored tiles back on the CPU with linear ramps over the overlaps, so the whole image never sits on the
accelerator (the Real-ESRGAN #184 pitfall: a 4K photo does not fit a GPU at full resolution). On an image no larger
than one tile it is exactly one untiled forward pass.

:func:`restore_paths` walks files and folders, skips (and reports) what cannot be read, converts grayscale, RGBA and
16-bit inputs to RGB (see :func:`m2restore.data.io.read_image`) and never writes over an input file.

Usage::

    m2restore restore photos/ one.jpg --checkpoint runs/x/checkpoints/best.pt --out restored/ --tile 256 --overlap 32
    m2restore restore hazy.png --checkpoint adair5d.ckpt --model adair --out restored/   # official checkpoint
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------------
# Tiled forward
# ---------------------------------------------------------------------------------------------------------------------
def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis: stride ``tile - overlap``, the last tile flush with the far border."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def _ramp(length: int, overlap: int, head: bool, tail: bool) -> Tensor:
    """1-D blending weights of one tile: linear ramps over the overlaps shared with a neighbour, 1 elsewhere."""
    w = torch.ones(length)  # (L,)
    n = min(overlap, length // 2)
    if n > 0:
        up = torch.arange(1, n + 1, dtype=torch.float32) / (n + 1)  # (n,) strictly positive
        if head:
            w[:n] = up
        if tail:
            w[-n:] = up.flip(0)
    return w


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.inference_mode()
def tiled_forward(
    model: nn.Module, img: Tensor, tile: int | None = 256, overlap: int = 32, device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> Tensor:
    """Restore ``img`` tile by tile, keeping the full image (input and output) on the CPU.

    Args:
        model: restoration model called as ``model(x) -> (B, 3, h, w)``; put it on ``device`` first.
        img: (B, 3, H, W) input in [0, 1], on the CPU (any device works; the result is on the CPU).
        tile: tile side in pixels; ``None`` or 0 runs the whole image at once.
        overlap: pixels shared by neighbouring tiles, blended with linear ramps (must be < ``tile``).
        device: where tiles run; defaults to the model's device.
        autocast_dtype: e.g. ``torch.bfloat16`` to run tiles under autocast (CUDA); None = full precision.

    Returns:
        (B, 3, H, W) float32 restored image on the CPU.
    """
    if img.ndim != 4:
        raise ValueError(f"tiled_forward expects a (B, C, H, W) tensor, got shape {tuple(img.shape)}")
    dev = torch.device(device) if device is not None else _model_device(model)
    b, _, h, w = img.shape

    def run(x: Tensor) -> Tensor:
        x = x.to(dev, non_blocking=True).float()  # (B, 3, th, tw) on the accelerator
        with torch.autocast(dev.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            y = model(x)
        return y.float().cpu()  # (B, 3, th, tw)

    if not tile or (h <= tile and w <= tile):
        return run(img)
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile); got overlap={overlap}, tile={tile}")
    out = torch.zeros(b, 3, h, w)  # (B, 3, H, W) accumulator on the CPU
    weight = torch.zeros(1, 1, h, w)  # (1, 1, H, W)
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    for i, y0 in enumerate(ys):
        wy = _ramp(th, overlap, head=i > 0, tail=i < len(ys) - 1)  # (th,)
        for j, x0 in enumerate(xs):
            wx = _ramp(tw, overlap, head=j > 0, tail=j < len(xs) - 1)  # (tw,)
            wt = (wy[:, None] * wx[None, :])[None, None]  # (1, 1, th, tw)
            pred = run(img[..., y0:y0 + th, x0:x0 + tw])  # (B, 3, th, tw)
            out[..., y0:y0 + th, x0:x0 + tw] += pred * wt
            weight[..., y0:y0 + th, x0:x0 + tw] += wt
    return out / weight  # (B, 3, H, W)


# ---------------------------------------------------------------------------------------------------------------------
# Restoring files and folders
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class RestoreReport:
    """What :func:`restore_paths` did."""

    written: list[tuple[Path, Path]] = field(default_factory=list)  # (input, output)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (input, reason)


def plan_outputs(
    inputs: Iterable[str | os.PathLike], out_dir: str | os.PathLike, ext: str = ".png",
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Map input files and folders to output paths under ``out_dir``.

    Folders are searched recursively and keep their sub-folder layout; an ``out_dir`` inside a folder is not searched.
    An output that would land on an input file, or on another output, gets a ``_restored`` / ``_2`` suffix.

    Returns:
        ``(pairs, skipped)``: (input file, output file) pairs and (path, reason) for inputs that do not exist.
    """
    from .data.io import IMAGE_EXTENSIONS, list_images

    out_root = Path(out_dir).resolve()
    found: list[tuple[Path, Path]] = []  # (file, path relative to out_dir)
    skipped: list[tuple[Path, str]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            inside = out_root != item.resolve() and item.resolve() in out_root.parents  # out_dir below item
            files = [f for f in list_images(item, recursive=True) if not (inside and out_root in f.resolve().parents)]
            if not files:
                skipped.append((item, f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in this folder"))
            found += [(f, f.relative_to(item)) for f in files]
        elif item.is_file():
            found.append((item, Path(item.name)))
        else:
            skipped.append((item, "no such file or folder"))
    sources = {f.resolve() for f, _ in found}  # inputs are never overwritten
    used: set[Path] = set()
    pairs: list[tuple[Path, Path]] = []
    for f, rel in found:
        base = out_root / rel.with_suffix(ext)
        if base.resolve() in sources:
            base = base.with_name(f"{base.stem}_restored{ext}")
        target, n = base, 2
        while target.resolve() in sources or target.resolve() in used:
            target = base.with_name(f"{base.stem}_{n}{ext}")
            n += 1
        used.add(target.resolve())
        pairs.append((f, target))
    return pairs, skipped


def restore_paths(
    model: nn.Module, inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *, tile: int | None = 256,
    overlap: int = 32, device: torch.device | str | None = None, autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
) -> RestoreReport:
    """Restore every image in ``inputs`` (files or folders) into ``out_dir`` as PNG.

    Args:
        model: restoration model (already on ``device``, in eval mode).
        inputs: image files and/or folders.
        out_dir: output folder (created).
        tile: tile side for :func:`tiled_forward` (None/0: whole image).
        overlap: tile overlap in pixels.
        device: where tiles run (default: the model's device).
        autocast_dtype: optional autocast dtype for the model (e.g. bfloat16 on CUDA).
        progress: show a tqdm bar.

    Returns:
        A :class:`RestoreReport`; unreadable files are listed in ``skipped`` and never stop the batch.
    """
    from tqdm.auto import tqdm

    from .data.io import ImageReadError, read_image, write_image

    pairs, skipped = plan_outputs(inputs, out_dir)
    report = RestoreReport(skipped=list(skipped))
    model.eval()
    for src, dst in tqdm(pairs, desc="restore", unit="img", disable=not progress):
        try:
            arr = read_image(src)  # (H, W, 3) float32 in [0, 1]
        except ImageReadError as e:
            report.skipped.append((src, str(e)))
            log.warning("skipped %s", e)
            continue
        x = torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()  # (1, 3, H, W)
        try:
            y = tiled_forward(model, x, tile=tile, overlap=overlap, device=device, autocast_dtype=autocast_dtype)
        except torch.OutOfMemoryError:
            reason = f"{src}: out of accelerator memory at tile={tile}; rerun with a smaller --tile"
            report.skipped.append((src, reason))
            log.warning("skipped %s", reason)
            continue
        write_image(dst, y[0].clamp(0, 1).permute(1, 2, 0).numpy())  # (H, W, 3)
        report.written.append((src, dst))
    return report


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------
def pick_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``m2restore restore``."""
    p = argparse.ArgumentParser(
        prog="m2restore restore", description="Restore images (files or folders) with a trained or official model.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders (searched recursively)")
    p.add_argument("--checkpoint", required=True, help="m2restore checkpoint, or an official PromptIR/AdaIR .ckpt")
    p.add_argument("--model", default=None, help="preset name; required only for official checkpoints")
    p.add_argument("--out", required=True, help="output folder (PNG files; inputs are never overwritten)")
    p.add_argument("--tile", type=int, default=256, help="tile side in pixels; 0 = whole image at once")
    p.add_argument("--overlap", type=int, default=32, help="overlap between tiles in pixels")
    p.add_argument("--weights", choices=("auto", "ema", "model"), default="auto",
                   help="which weights of an m2restore checkpoint (auto: EMA when present)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16 autocast (CUDA)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """``m2restore restore``: exit 0 when every input was restored, 1 when some were skipped, 2 on bad usage."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .config import ConfigError
    from .train.checkpoint import CheckpointError, load_model

    if args.tile < 0 or (args.tile and not 0 <= args.overlap < args.tile):
        print(f"m2restore restore: need 0 <= --overlap < --tile (got {args.overlap}, {args.tile})", file=sys.stderr)
        return 2
    device = pick_device(args.device)
    try:
        model, info = load_model(args.checkpoint, model_name=args.model, weights=args.weights, device=device)
    except (CheckpointError, ConfigError) as e:
        print(f"m2restore restore: {e}", file=sys.stderr)
        return 2
    log.info("model %s from %s (%s weights) on %s", info["model"], args.checkpoint, info["weights"], device)
    report = restore_paths(
        model, args.inputs, args.out, tile=args.tile or None, overlap=args.overlap, device=device,
        autocast_dtype=torch.bfloat16 if args.precision == "bf16" else None, progress=not args.no_progress,
    )
    log.info("restored %d image(s) into %s", len(report.written), args.out)
    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return 1 if report.skipped else 0
