"""Command-line entry points of the data tools (``data_scripts/*.py`` are thin wrappers around these).

Each is ``main(argv) -> exit code``; nothing parses arguments at import.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

__all__ = [
    "make_mini_allweather_main",
    "make_mini_cdd11_main",
    "measure_realism_main",
    "prepare_allweather_main",
    "prepare_cdd11_main",
]


def _mini_parser(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"make_mini_{name}.py",
        description=f"Build a mini {name} offline (clean photographs cropped, degraded by m2restore.data.degrade).",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--clean-dir", default=None,
                        help="clean photographs, read recursively (default: the photographs bundled in scikit-image)")
    parser.add_argument("--size", type=int, default=128, help="crop size in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, crops and synthesis (default 0)")
    parser.add_argument("--n-train", type=int, default=24, help="clean crops in train (default 24)")
    parser.add_argument("--n-test", type=int, default=8, help="clean crops in test (default 8)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing different folder")
    return parser


def _make_mini(name: str, argv: list[str] | None) -> int:
    from .mini import make_mini_allweather, make_mini_cdd11

    args = _mini_parser(name).parse_args(argv)
    build = make_mini_cdd11 if name == "cdd11" else make_mini_allweather
    out = build(args.out, clean_dir=args.clean_dir, size=args.size, seed=args.seed, n_train=args.n_train,
                n_test=args.n_test, overwrite=args.overwrite)
    files = json.loads((out / "mini_info.json").read_text())["files"]
    print(f"mini {name} ready at {out} ({len(files)} degraded/clean sources; details in mini_info.json)")
    return 0


def make_mini_cdd11_main(argv: list[str] | None = None) -> int:
    """``make_mini_cdd11.py --out DIR [--clean-dir DIR] [--size N] [--seed S]``."""
    return _make_mini("cdd11", argv)


def make_mini_allweather_main(argv: list[str] | None = None) -> int:
    """``make_mini_allweather.py --out DIR [--clean-dir DIR] [--size N] [--seed S]``."""
    return _make_mini("allweather", argv)


def _prepare(name: str, argv: list[str] | None) -> int:
    from . import prepare

    downloads = prepare.CDD11_DOWNLOADS if name == "cdd11" else prepare.ALLWEATHER_DOWNLOADS
    parser = argparse.ArgumentParser(
        prog=f"prepare_{name}.py",
        description=f"Arrange an extracted {name} download into our layout and check it.",
        epilog=downloads, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--src", help="the extracted download (searched a few levels deep)")
    parser.add_argument("--out", help="dataset root to create from --src")
    parser.add_argument("--mode", choices=("link", "copy", "move"), default="link", help="how to place files")
    parser.add_argument("--check", metavar="ROOT", help="only check an arranged dataset root")
    parser.add_argument("--decode", action="store_true", help="decode every image while checking (slow)")
    args = parser.parse_args(argv)
    if args.check is None and (args.src is None or args.out is None):
        print(downloads)
        print("\nThen run with --src DOWNLOAD --out ROOT to arrange it, or --check ROOT to check it.")
        return 2
    root = args.check
    if root is None:
        arrange = prepare.arrange_cdd11 if name == "cdd11" else prepare.arrange_allweather
        root = arrange(args.src, args.out, args.mode)
    check = prepare.check_cdd11 if name == "cdd11" else prepare.check_allweather
    report = check(root, decode=args.decode)
    print(report.table())
    return 0 if report.ok else 1


def prepare_cdd11_main(argv: list[str] | None = None) -> int:
    """``prepare_cdd11.py [--src DOWNLOAD --out ROOT] [--check ROOT] [--decode]``."""
    return _prepare("cdd11", argv)


def prepare_allweather_main(argv: list[str] | None = None) -> int:
    """``prepare_allweather.py [--src DOWNLOAD --out ROOT] [--check ROOT] [--decode]``."""
    return _prepare("allweather", argv)


def measure_realism_main(argv: list[str] | None = None) -> int:
    """``measure_realism.py [--mini DIR | --clean-dir DIR] [--pairs-dir DIR] [--speed] [--json FILE]``."""
    import pandas as pd

    from . import realism
    from .mini import make_mini_cdd11

    parser = argparse.ArgumentParser(prog="measure_realism.py", description=(
        "Input PSNR/SSIM of a synthetic mini CDD-11 test set per type (vs the real CDD-11's 16.00 dB / 0.601), "
        "real pairs vs our synthesis on the same clean images, and synthesis speed."))
    parser.add_argument("--mini", help="an existing mini CDD-11 (default: build one in a temporary folder)")
    parser.add_argument("--clean-dir", default=None, help="clean photographs for the temporary mini CDD-11")
    parser.add_argument("--n-test", type=int, default=8, help="test crops of the temporary mini CDD-11")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs-dir", help="real pairs <category>/<source>/{input,target} (e.g. shared/data/real_pairs)")
    parser.add_argument("--seeds", type=int, default=4, help="synthesis seeds per real clean image")
    parser.add_argument("--speed", action="store_true", help="also time the synthesis (ms per 256x256 image)")
    parser.add_argument("--json", help="write all tables to this JSON file")
    args = parser.parse_args(argv)
    pd.set_option("display.width", 160)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.mini or make_mini_cdd11(Path(tmp) / "mini", args.clean_dir, args.size, args.seed, n_train=0,
                                            n_test=args.n_test)
        table = realism.cdd11_test_quality(root)
    print("Input quality of the synthetic CDD-11 test set (RGB PSNR/SSIM, skimage.metrics), per type:")
    print(table.round(3).to_string())
    results["cdd11_test"] = table.reset_index().to_dict(orient="records")
    if args.pairs_dir:
        pairs = realism.real_pairs_comparison(args.pairs_dir, range(args.seeds))
        print("\nReal degraded input vs our synthesis on the same clean target (input PSNR, dB):")
        print(pairs.round(2).to_string(index=False))
        ranges = pairs.groupby("category").agg(real_min=("real_psnr", "min"), real_max=("real_psnr", "max"),
                                               syn_min=("syn_psnr_min", "min"), syn_max=("syn_psnr_max", "max"))
        print("\nInput-PSNR ranges per category:")
        print(ranges.round(2).to_string())
        results["real_pairs"] = pairs.to_dict(orient="records")
    if args.speed:
        speed = realism.synthesis_speed()
        print("\nSynthesis time, ms per 256x256 image (median of 5):")
        print(speed.round(1).to_string())
        results["speed_ms_256"] = speed["ms"].to_dict()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0
