"""``m2restore bench``: run a papermill benchmark grid, or build tables and figures from finished runs.

    m2restore bench --grid benchmarks/grids/demo.yaml [--out DIR] [--set budget_steps=50] [--force]
    m2restore bench report --runs DIR/runs --out DIR
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import ConfigError, parse_override


def parse_sets(texts: list[str]) -> dict[str, object]:
    """``--set KEY=VALUE`` strings -> {KEY: value parsed as YAML}; notebook parameters are flat names."""
    extra = {}
    for text in texts:
        path, value = parse_override(text)
        if len(path) != 1:
            raise ConfigError(f"--set {text!r}: notebook parameters are flat names (e.g. budget_steps=100)")
        extra[path[0]] = value
    return extra


def find_grid(path: str) -> Path:
    """A grid file as given, else relative to the repository (so the shipped grids work from any folder)."""
    from .runner import REPO_ROOT

    p = Path(path)
    return p if p.is_file() or p.is_absolute() else (REPO_ROOT / p if (REPO_ROOT / p).is_file() else p)


def _report_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="m2restore bench report", description="tables and figures from records")
    parser.add_argument("--runs", required=True, help="folder searched recursively for record.json")
    parser.add_argument("--out", required=True, help="gets tables/, figures/ and report.md")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    from .report import build_report

    rep = build_report(args.runs, args.out, figures=not args.no_figures)
    print(f"[bench report] {rep.n_ok} finished run(s), {len(rep.failed)} failed; "
          f"{len(rep.tables)} table files and {len(rep.figures)} figures in {args.out}")
    return 0 if rep.n_ok else 1


def _run_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="m2restore bench", description="Run notebook 09 for every model x dataset x seed of a grid, then report. "
        "Use `m2restore bench report --runs DIR --out DIR` to rebuild tables and figures only."
    )
    parser.add_argument("--grid", required=True, help="grid YAML, e.g. benchmarks/grids/demo.yaml")
    parser.add_argument("--out", help="results folder (default benchmarks/results/<grid name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a shared notebook parameter for every run (repeatable)")
    parser.add_argument("--model", action="append", default=[], help="run only these models (repeatable)")
    parser.add_argument("--force", action="store_true", help="rerun finished runs (old folders are archived)")
    parser.add_argument("--no-report", action="store_true", help="skip tables and figures")
    parser.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
    args = parser.parse_args(argv)
    from .runner import load_grid, run_grid

    grid = load_grid(find_grid(args.grid))
    extra = parse_sets(args.overrides)
    unknown = sorted(set(args.model) - set(grid.models))
    if unknown:
        raise ConfigError(f"--model {unknown} not in grid '{grid.name}' (models: {', '.join(grid.models)})")
    out = Path(args.out or Path("benchmarks") / "results" / grid.name)
    outcomes = run_grid(grid, out, extra=extra, force=args.force, log_output=args.log_output,
                        only=(lambda s: s.model in args.model) if args.model else None)
    if not args.no_report:
        return max(_report_main(["--runs", str(out / "runs"), "--out", str(out)]),
                   int(any(o.status == "failed" for o in outcomes)))
    return int(any(o.status == "failed" for o in outcomes))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``m2restore bench`` (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "report":
            return _report_main(argv[1:])
        return _run_main(argv)
    except ConfigError as e:
        print(f"m2restore bench: {e}", file=sys.stderr)
        return 2
