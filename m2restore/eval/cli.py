"""``m2restore test``: evaluate a checkpoint per degradation type (PSNR/SSIM on RGB and Y, optional LPIPS).

Examples::

    m2restore test --checkpoint runs/adair_tiny/checkpoints/best.pt --dataset mini-cdd11 --data-root data/mini
    m2restore test --checkpoint adair5d.ckpt --model adair --dataset cdd11 --data-root /data/CDD-11 \\
        --metrics psnr,ssim,lpips --tile 512 --out results/adair_official_cdd11

m2restore checkpoints describe their model; official PromptIR/AdaIR checkpoints need ``--model``. Results go to
``--out`` (default ``<run>/eval/<dataset>_<split>_<checkpoint>`` for a checkpoint inside a run folder, else
``eval/<checkpoint>_<dataset>_<split>``): results.json (with the protocol), results.csv and per_image.csv.
Exit status: 0 done, 2 bad arguments, checkpoint or data.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def default_out(checkpoint: str, dataset: str, split: str) -> Path:
    """Where results go when ``--out`` is not given."""
    ckpt = Path(checkpoint)
    if ckpt.parent.name == "checkpoints":
        return ckpt.parent.parent / "eval" / f"{dataset}_{split}_{ckpt.stem}"
    return Path("eval") / f"{ckpt.stem}_{dataset}_{split}"


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``m2restore test``."""
    p = argparse.ArgumentParser(
        prog="m2restore test", description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="m2restore checkpoint, or an official PromptIR/AdaIR .ckpt")
    p.add_argument("--model", help="preset name; required for official checkpoints")
    p.add_argument("--dataset", required=True, help="cdd11, allweather, mini-cdd11, mini-allweather, folder, synthetic")
    p.add_argument("--data-root", required=True, help="dataset folder")
    p.add_argument("--split", default="test", help="split or AllWeather subset (default test)")
    p.add_argument("--metrics", default="psnr,ssim", help="comma list: psnr, ssim, and pyiqa names such as lpips")
    p.add_argument("--spaces", default="rgb,y", help="colour spaces of PSNR/SSIM: rgb, y or rgb,y")
    p.add_argument("--crop-border", type=int, default=0, help="pixels removed from each side before measuring")
    p.add_argument("--no-quantize", action="store_true", help="measure float outputs instead of 8-bit-rounded ones")
    p.add_argument("--weights", choices=("auto", "ema", "model"), default="auto",
                   help="which weights of an m2restore checkpoint (auto: EMA when present)")
    p.add_argument("--tile", type=int, default=0, help="tiled inference with this tile size (0: whole images)")
    p.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--limit", type=int, help="evaluate only the first N images (smoke runs)")
    p.add_argument("--save-images", action="store_true", help="also write restored images to <out>/images")
    p.add_argument("--out", help="results folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``m2restore test``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ..config import ConfigError
    from ..data import DatasetError
    from ..infer import pick_device
    from ..train.checkpoint import CheckpointError
    from .evaluate import evaluate

    out = Path(args.out) if args.out else default_out(args.checkpoint, args.dataset, args.split)
    try:
        results = evaluate(
            args.checkpoint, args.dataset, data_root=args.data_root, split=args.split, model_name=args.model,
            weights=args.weights, metrics=args.metrics, spaces=[s.strip() for s in args.spaces.split(",") if s.strip()],
            crop_border=args.crop_border, quantize=not args.no_quantize, device=pick_device(args.device),
            tile=args.tile or None, overlap=args.overlap, limit=args.limit,
            save_images=out / "images" if args.save_images else None, out_dir=out, progress=not args.no_progress,
        )
    except (CheckpointError, ConfigError, DatasetError, ValueError) as e:
        print(f"m2restore test: {e}", file=sys.stderr)
        return 2
    p = results.protocol
    print(f"{p['model']} ({p['kind']}, {p.get('weights', 'given')} weights) on {args.dataset}/{args.split}, "
          f"{p['images']} images, crop_border={p['crop_border']}, Y = BT.601")
    print(results.table())
    for name, why in p["skipped"].items():
        print(f"note: {name} not computed: {why}", file=sys.stderr)
    print(f"results: {out}/results.json, results.csv, per_image.csv")
    return 0
