"""Benchmarks: papermill runs of notebook 09 over a grid, JSON records, and tables/figures built from them.

``runner`` executes a grid, ``records`` defines the per-run JSON record, ``report`` and ``figures`` turn records into
tables and plots, ``pipeline`` holds the steps notebook 09 runs, and ``demo`` is ``make demo``.
"""
from __future__ import annotations

from typing import Any

_LAZY = {
    "RunRecord": "m2restore.bench.records",
    "load_records": "m2restore.bench.records",
    "write_record": "m2restore.bench.records",
    "Grid": "m2restore.bench.runner",
    "load_grid": "m2restore.bench.runner",
    "run_grid": "m2restore.bench.runner",
    "build_report": "m2restore.bench.report",
    "make_figures": "m2restore.bench.figures",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'm2restore.bench' has no attribute {name!r}")
