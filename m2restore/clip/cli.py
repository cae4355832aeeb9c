"""``m2restore clip``: train, evaluate and inspect the CLIP degradation prior.

    m2restore clip train --data DATASET --out DIR [--steps 2000] [--minutes 10] [--source tiny] [--device cpu]
    m2restore clip eval  --checkpoint FILE --data DATASET [--split test] [--out DIR] [--device cpu]
    m2restore clip classes                         the prompt bank's class sets

Fine-tuning pretrained ViT-B/32 on a machine with network and a GPU (weights cached on first use):

    M2RESTORE_ALLOW_DOWNLOAD=1 m2restore clip train --data DATASET --out runs/clip_vitb32 \\
        --source openclip:ViT-B-32:laion2b_s34b_b79k --lr 1e-5 --batch-size 128 --minutes 0 --steps 2000 \\
        --device cuda
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .finetune import TrainConfig


def build_parser() -> argparse.ArgumentParser:
    from .finetune import TrainConfig

    d = TrainConfig()
    parser = argparse.ArgumentParser(prog="m2restore clip", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="degradation-aware training of the CLIP image and text towers")
    tr.add_argument("--data", required=True, help="dataset root in CDD-11 layout {train,test}/<type>/*.png")
    tr.add_argument("--out", required=True, help="run folder (last.pt for resume, prior.pt, confusion.*)")
    tr.add_argument("--source", default=d.source, help="tiny | openclip:ARCH:TAG | local:ARCH:PATH | tiny:PATH")
    tr.add_argument("--arch", default=d.arch, help="open_clip architecture trained from scratch by --source tiny "
                    "(m2r-tiny-clip-rn: small ResNet; m2r-tiny-clip: small ViT)")
    tr.add_argument("--classes", default=d.classes, help="prompt-bank class set or comma list (default: K=13)")
    tr.add_argument("--loss", default=d.loss, choices=["ce", "clip"])
    tr.add_argument("--captions-per-step", type=int, default=d.captions_per_step,
                    help="captions drawn per class each step for the ce loss (0: all)")
    tr.add_argument("--steps", type=int, default=d.steps, help="step budget (0: none)")
    tr.add_argument("--minutes", type=float, default=d.minutes, help="wall-clock budget (0: none)")
    tr.add_argument("--batch-size", type=int, default=d.batch_size)
    tr.add_argument("--lr", type=float, default=d.lr)
    tr.add_argument("--weight-decay", type=float, default=d.weight_decay)
    tr.add_argument("--warmup", type=int, default=d.warmup)
    tr.add_argument("--crop-scale", type=float, nargs=2, default=list(d.crop_scale),
                    help="random crop side as a fraction of the shorter side (min max)")
    tr.add_argument("--no-flip", action="store_true", help="disable random horizontal flips")
    tr.add_argument("--jitter", type=float, default=d.jitter, help="colour jitter strength (0: off)")
    tr.add_argument("--resynth", type=int, default=d.resynth,
                    help="images per batch degraded afresh from the train split's clean photos (0: stored only)")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="model config override, e.g. --set vision_cfg.patch_size=8 (repeatable)")
    tr.add_argument("--eval-every", type=int, default=d.eval_every)
    tr.add_argument("--seed", type=int, default=d.seed)
    tr.add_argument("--threads", type=int, default=d.threads)
    tr.add_argument("--device", default=d.device, help="cpu | cuda | cuda:N")
    tr.add_argument("--resume", default=d.resume, help="auto (continue DIR/last.pt if present), PATH, or ''")
    tr.add_argument("--no-progress", action="store_true")
    ev = sub.add_parser("eval", help="zero-shot accuracy per type and a confusion matrix")
    ev.add_argument("--checkpoint", required=True, help="prior.pt from `clip train`, or a build_prior source")
    ev.add_argument("--data", required=True)
    ev.add_argument("--split", default="test")
    ev.add_argument("--out", default=None, help="folder for confusion.csv/png and eval.json "
                                                "(default: beside the checkpoint)")
    ev.add_argument("--batch-size", type=int, default=64)
    ev.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    sub.add_parser("classes", help="list the prompt bank's class sets")
    return parser


def _override(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"--set {text}: expected KEY=VALUE, e.g. vision_cfg.patch_size=8")
    return key, yaml.safe_load(value)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` that ``m2restore clip train`` runs for parsed arguments ``args``."""
    from .finetune import TrainConfig

    return TrainConfig(
        data=args.data, out=args.out, source=args.source, arch=args.arch, classes=args.classes, loss=args.loss,
        captions_per_step=args.captions_per_step,
        model_overrides=dict(_override(s) for s in args.set), steps=args.steps, minutes=args.minutes,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, warmup=args.warmup,
        crop_scale=tuple(args.crop_scale), flip=not args.no_flip, jitter=args.jitter, resynth=args.resynth,
        eval_every=args.eval_every, seed=args.seed, threads=args.threads, device=args.device, resume=args.resume,
        progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``m2restore clip``."""
    args = build_parser().parse_args(argv)
    if args.cmd == "classes":
        from .prompts import list_class_sets

        for name, members in list_class_sets().items():
            print(f"{name:<11} K={len(members):<3} {', '.join(members)}")
        return 0
    if args.cmd == "train":
        from .finetune import train_prior

        cfg = train_config(args)
        summary = train_prior(cfg)
        summary.pop("loss_history")
        print(json.dumps(summary, indent=2))
        return 0
    from pathlib import Path

    from .evaluate import evaluate_prior

    out = args.out
    if out is None and Path(args.checkpoint).is_file():
        out = Path(args.checkpoint).parent / f"eval_{args.split}"
    res = evaluate_prior(args.checkpoint, args.data, args.split, out_dir=out, batch_size=args.batch_size,
                         device=args.device)
    print(f"zero-shot accuracy {res['accuracy']:.4f} ({len(res['per_type'])}-way, n={res['n']}); "
          f"over all {res['num_classes']} prior classes {res['accuracy_full']:.4f}")
    for name, acc in res["per_type"].items():
        print(f"  {name:<15} {acc:.3f}")
    if res["confused"]:
        print("most confused (true -> predicted: count): "
              + ", ".join(f"{a} -> {b}: {n}" for a, b, n in res["confused"]))
    if out is not None:
        print(f"wrote {Path(out) / 'confusion.csv'} and confusion.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
