"""``m2restore models``: list registered presets, or print one preset's resolved config as YAML."""
from __future__ import annotations

import argparse

import yaml


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``m2restore models [NAME] [--set key=value ...]``."""
    parser = argparse.ArgumentParser(prog="m2restore models", description=__doc__)
    parser.add_argument("name", nargs="?", help="a preset name: print its config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    from .config import apply_overrides, to_dict
    from .registry import get_preset, list_models

    if args.name is None:
        for name in list_models():
            p = get_preset(name)
            print(f"{name:<24} {p.family:<10} {p.description}")
        return 0
    cfg = apply_overrides(get_preset(args.name).config(), args.overrides)
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
    return 0
