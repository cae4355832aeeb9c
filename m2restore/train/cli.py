"""``m2restore train``: train any registered model on any dataset, on one CPU or (via accelerate) many GPUs.

Examples::

    m2restore train --dataset mini-cdd11 --data-root data/mini-cdd11 --model adair_tiny --config cpu-tiny \\
        --max-steps 300 --out runs/adair_tiny
    m2restore train --out runs/adair_tiny --resume auto --max-steps 600          # continue (and extend) a run
    accelerate launch --num_processes 4 -m m2restore train --config m2restore --dataset allweather \\
        --data-root /data/allweather --out runs/m2restore_aw                    # 4 GPUs, DDP, bf16
    torchrun --standalone --nproc_per_node 2 -m m2restore train ...              # 2 CPU processes (gloo)

Config layers, later wins: defaults < the run's saved config.yaml (when resuming) < --config < flags < --set.
Extending a run with a larger --max-steps re-stretches the cosine to the new length unless train.cosine_steps is set.
``--config`` takes a file or the name of a bundled recipe (m2restore, promptir, adair, cpu-tiny).
Exit status: 0 done, 1 stopped on a NaN/inf loss, 2 bad arguments, config, data or run folder.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

RECIPES = Path(__file__).resolve().parent.parent / "configs"


def recipe_path(name: str) -> str:
    """A YAML path, or the bundled recipe ``m2restore/configs/<name>.yaml``."""
    if Path(name).is_file() or name.endswith((".yaml", ".yml")):
        return name
    bundled = RECIPES / f"{name}.yaml"
    if bundled.is_file():
        return str(bundled)
    names = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml")))
    raise FileNotFoundError(f"--config {name}: no such file and no bundled recipe of that name ({names})")


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``m2restore train``."""
    p = argparse.ArgumentParser(
        prog="m2restore train", description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="YAML recipe: a file or a bundled name (m2restore, promptir, adair, cpu-tiny)")
    p.add_argument("--model", help="registered preset (m2restore models lists them)")
    p.add_argument("--dataset", help="cdd11, allweather, mini-cdd11, mini-allweather, folder or synthetic")
    p.add_argument("--data-root", help="dataset folder")
    p.add_argument("--max-steps", type=int, help="optimizer steps (overrides train.epochs)")
    p.add_argument("--batch-size", type=int, help="micro-batch per process")
    p.add_argument("--patch-size", type=int, help="training crop size")
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--out", help="run folder (default runs/<model>_<dataset>); never overwritten without --resume")
    p.add_argument("--resume", help="'auto' (continue --out if it has a checkpoint) or a checkpoint file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. train.lr=1e-4 or model.dim=32 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar (logs still go to the run folder)")
    return p


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    """Flags given on the command line, as partial config sections."""
    fields: dict[str, Any] = {}
    data = {k: v for k, v in (("dataset", args.dataset), ("root", args.data_root), ("batch_size", args.batch_size),
                              ("patch_size", args.patch_size)) if v is not None}
    train = {k: v for k, v in (("precision", args.precision),) if v is not None}
    if args.max_steps is not None:
        train.update(max_steps=args.max_steps, epochs=None)
    if args.no_progress:
        train["progress"] = False
    if data:
        fields["data"] = data
    if train:
        fields["train"] = train
    for key, value in (("model", args.model), ("seed", args.seed), ("out_dir", args.out), ("resume", args.resume)):
        if value is not None:
            fields[key] = value
    return fields


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``m2restore train``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ..config import ConfigError, load_yaml
    from ..data import DatasetError
    from .checkpoint import CheckpointError
    from .config import build_config
    from .trainer import RunExistsError, Trainer

    try:
        config_file = recipe_path(args.config) if args.config else None
        fields = _fields(args)
        cfg = build_config(None, config_file, args.overrides, **fields)
        saved = cfg.run_dir / "config.yaml"
        if args.resume and saved.is_file():
            # continue the run as it was configured; flags and --set given now still apply on top
            cfg = build_config(load_yaml(saved), config_file, args.overrides, **fields)
        trainer = Trainer(cfg)
        result = trainer.fit()
    except (ConfigError, DatasetError, CheckpointError, RunExistsError, FileNotFoundError) as e:
        print(f"m2restore train: {e}", file=sys.stderr)
        return 2
    if result.stopped == "nan":
        return 1
    if not trainer.is_main:
        return 0
    best = f", best val PSNR {result.best_metric:.2f} dB at step {result.best_step}" if result.best_metric else ""
    print(f"trained {result.steps} steps in {result.wall_time_s:.0f} s{best}; run folder {result.run_dir}")
    return 0
