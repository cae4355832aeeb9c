"""``m2restore data``: build mini datasets, arrange/check real downloads, measure synthesis realism."""
from __future__ import annotations

import sys

from . import scripts

# sub-command -> (entry point, one-line help)
_COMMANDS = {
    "mini-cdd11": (scripts.make_mini_cdd11_main, "build mini CDD-11 offline (official layout)"),
    "mini-allweather": (scripts.make_mini_allweather_main, "build mini AllWeather offline"),
    "prepare-cdd11": (scripts.prepare_cdd11_main, "arrange and --check a CDD-11 download"),
    "prepare-allweather": (scripts.prepare_allweather_main, "arrange and --check an AllWeather download"),
    "realism": (scripts.measure_realism_main, "input PSNR/SSIM of synthetic vs real degradations"),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``m2restore data SUBCOMMAND ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in _COMMANDS:
        print("usage: m2restore data {" + ",".join(_COMMANDS) + "} [options]\n")
        for name, (_, text) in _COMMANDS.items():
            print(f"  {name:<20} {text}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    fn, _ = _COMMANDS[argv[0]]
    return int(fn(argv[1:]) or 0)
