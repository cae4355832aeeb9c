"""``m2restore`` command line: a thin dispatcher that imports only the sub-command it runs.

Each sub-command lives in its own module with a ``main(argv) -> int``; importing it is deferred so that
``m2restore --help`` answers instantly even though torch, open_clip and pyiqa are slow to import.
"""
from __future__ import annotations

import importlib
import sys

# name -> (module with main(argv), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("m2restore.bench.demo", "the main job: mini CDD-11, tiny CLIP prior, 3 models, tables and figures"),
    "train": ("m2restore.train.cli", "train a registered model on a dataset (resumable; accelerate-ready)"),
    "test": ("m2restore.eval.cli", "evaluate a checkpoint per degradation type (PSNR/SSIM on RGB and Y, LPIPS)"),
    "restore": ("m2restore.infer", "restore your own photos (files or folders; tiled for large images)"),
    "profile": ("m2restore.eval.profile", "parameters, FLOPs, latency and peak memory of registered models"),
    "models": ("m2restore.cli_models", "list registered models and their configs"),
    "clip": ("m2restore.clip.cli", "train / evaluate the CLIP degradation prior"),
    "bench": ("m2restore.bench.cli", "run a papermill benchmark grid, or 'bench report' to build tables/figures"),
    "data": ("m2restore.data.cli", "build mini datasets and check real ones"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: m2restore COMMAND [options]   (m2restore COMMAND --help for details)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv[0]`` to its sub-command module."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"m2restore {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"m2restore: unknown command '{name}'\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
