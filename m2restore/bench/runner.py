"""Run a benchmark grid: notebook 09 executed by papermill once per model x dataset x seed.

A grid YAML names the notebook, the kernel, the models, the datasets and the seeds, and ONE set of parameters
(budget, batch, patch, device ...) that every run shares, so each model gets the same budget, data and seeds::

    name: demo
    notebook: notebooks/09_benchmark_run.ipynb   # relative to the repository (or to the grid file)
    kernel: m2restore
    models: [m2restore_tiny, adair_tiny, promptir_tiny]
    datasets: [{name: mini-cdd11, data_root: data/mini-cdd11}]
    seeds: [0]
    parameters: {budget_steps: 300, batch_size: 8, patch_size: 64, device: cpu}

Before running, the parameter names are checked against the notebook (``papermill.inspect_notebook``) and the
kernel against the installed kernelspecs. Each run gets ``<out>/runs/<dataset>/<model>/seed<k>/`` holding the executed
notebook ``run.ipynb`` and ``record.json``. A failing run is recorded with its notebook cell and the grid goes on.
A finished run is never overwritten: it is skipped, and ``force=True`` moves it to ``<out>/runs/_archive/`` first.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, from_dict, load_yaml, save_yaml
from .records import RECORD_NAME, RunRecord, git_commit, read_record, write_record

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_NAME = "run.ipynb"
# parameters the runner itself sets for every run; the notebook must declare them
RUNNER_PARAMETERS = ("model", "dataset", "data_root", "seed", "out_dir")


@dataclass
class DatasetSpec:
    """One dataset of a grid: the registry name and where its files are."""

    name: str
    data_root: str = ""  # empty: the notebook builds / finds the data itself (mini datasets)


@dataclass
class Grid:
    """A benchmark grid (see the module docstring for the YAML form)."""

    name: str
    models: list[str]
    datasets: list[DatasetSpec]
    seeds: list[int] = field(default_factory=lambda: [0])
    notebook: str = "notebooks/09_benchmark_run.ipynb"
    kernel: str = "m2restore"  # pinned: every run uses this kernelspec
    parameters: dict[str, Any] = field(default_factory=dict)  # shared by every run
    description: str = ""
    cell_timeout_s: int = 0  # papermill per-cell timeout; 0 = none
    source: str = ""  # the YAML file it came from (filled by load_grid)

    def __post_init__(self) -> None:
        self.datasets = [
            DatasetSpec(d) if isinstance(d, str) else DatasetSpec(**d) if isinstance(d, dict) else d
            for d in self.datasets
        ]
        if not self.models or not self.datasets or not self.seeds:
            raise ConfigError(f"grid '{self.name}': models, datasets and seeds must each list at least one entry")
        clash = sorted(set(self.parameters) & set(RUNNER_PARAMETERS))
        if clash:
            raise ConfigError(
                f"grid '{self.name}': parameters {clash} are set per run by the grid (models/datasets/seeds/out); "
                "remove them from 'parameters'"
            )
        names = [d.name for d in self.datasets]
        for what, items in (("models", self.models), ("seeds", self.seeds), ("datasets", names)):
            if len(set(items)) != len(items):
                raise ConfigError(f"grid '{self.name}': duplicate entries in {what}: {items}")

    def runs(self) -> list[RunSpec]:
        """Every model x dataset x seed, dataset-major so that one dataset's runs finish together."""
        return [RunSpec(m, d, s) for d in self.datasets for s in self.seeds for m in self.models]


@dataclass
class RunSpec:
    """One cell of the grid."""

    model: str
    dataset: DatasetSpec
    seed: int

    @property
    def run_id(self) -> str:
        return f"{self.dataset.name}/{self.model}/seed{self.seed}"


@dataclass
class RunOutcome:
    """What happened to one run."""

    run_id: str
    status: str  # "ok" | "failed" | "skipped"
    folder: Path
    wall_s: float = 0.0
    message: str = ""


def load_grid(path: str | os.PathLike) -> Grid:
    """Read a grid YAML; dataset entries may be plain names. Errors name the file and the bad key."""
    p = Path(path)
    data = load_yaml(p)
    data["datasets"] = [{"name": d} if isinstance(d, str) else d for d in data.get("datasets", [])]  # plain names
    data.setdefault("name", p.stem)
    try:
        grid = from_dict(Grid, data)
    except (ConfigError, TypeError) as e:
        raise ConfigError(f"{p}: {e}") from None
    grid.source = str(p)
    return grid


def resolve_notebook(grid: Grid) -> Path:
    """The grid's notebook: as given, else relative to the repository, else relative to the grid file."""
    candidates = [Path(grid.notebook), REPO_ROOT / grid.notebook]
    if grid.source:
        candidates.append(Path(grid.source).parent / grid.notebook)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    looked = ", ".join(str(c) for c in candidates)
    raise ConfigError(f"grid '{grid.name}': notebook not found: {grid.notebook} (looked in {looked})")


def check_kernel(name: str) -> None:
    """Raise ConfigError unless kernelspec ``name`` is installed."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if name not in specs:
        raise ConfigError(
            f"jupyter kernel '{name}' is not installed (have: {', '.join(sorted(specs))}). Run `make setup`, which "
            f"installs the 'm2restore' kernel, or set `kernel:` in the grid file to one of those"
        )


def check_parameters(notebook: Path, names: list[str]) -> dict[str, Any]:
    """Raise ConfigError if a name is not a parameter of ``notebook``; return the notebook's parameters."""
    import papermill as pm

    try:
        declared = pm.inspect_notebook(str(notebook))
    except ValueError as e:  # e.g. no kernelspec in the metadata
        raise ConfigError(f"{notebook}: papermill cannot inspect it ({e}); regenerate it with jupytext") from None
    if not declared:
        raise ConfigError(f"{notebook}: no cell tagged 'parameters'; papermill cannot parameterise it")
    unknown = sorted(set(names) - set(declared))
    if unknown:
        raise ConfigError(f"{notebook}: unknown parameter(s) {unknown}. The notebook declares: {', '.join(declared)}")
    return declared


def _absolute_paths(params: dict[str, Any]) -> dict[str, Any]:
    """Relative paths in ``*_root``/``*_dir``/``*_path``/``*_checkpoint`` parameters, made absolute from the current
    folder: the notebook runs with its own folder as working directory."""
    suffixes = ("_root", "_dir", "_path", "_checkpoint")
    return {
        k: str(Path(v).resolve()) if isinstance(v, str) and v and k.endswith(suffixes) else v for k, v in params.items()
    }


def run_folder(out_dir: Path, spec: RunSpec) -> Path:
    """``<out>/runs/<dataset>/<model>/seed<k>``."""
    return out_dir / "runs" / spec.dataset.name / spec.model / f"seed{spec.seed}"


def _archive(folder: Path, out_dir: Path) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    dest = out_dir / "runs" / "_archive" / f"{folder.relative_to(out_dir / 'runs')}-{stamp}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder), dest)
    return dest


def _failed_record(grid: Grid, spec: RunSpec, params: dict[str, Any], error: dict[str, Any], wall: float) -> RunRecord:
    return RunRecord(
        run_id=spec.run_id, model=spec.model, dataset=spec.dataset.name, seed=spec.seed, status="failed",
        grid=grid.name, parameters=params, error=error, notebook=NOTEBOOK_NAME, git_commit=git_commit(),
        wall_time_s={"notebook": wall},
    )


def _error_info(exc: BaseException, executed: Path) -> dict[str, Any]:
    """Where and why a run failed: the index of the failing cell in the executed notebook as saved (papermill puts
    an error banner cell on top), its execution count and first line, and the exception name and value."""
    import nbformat
    from papermill.exceptions import PapermillExecutionError

    info: dict[str, Any] = {"cell": None, "exec_count": None, "ename": type(exc).__name__, "evalue": str(exc),
                            "source": ""}
    if isinstance(exc, PapermillExecutionError):
        info.update(exec_count=exc.exec_count, ename=exc.ename, evalue=exc.evalue)
    try:
        cells = nbformat.read(executed, as_version=4).cells
    except (OSError, ValueError):
        return info
    for i, cell in enumerate(cells):
        if cell.cell_type == "code" and any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            lines = cell.source.strip().splitlines()
            info.update(cell=i, source=lines[0] if lines else "")
            break
    return info


def run_one(
    grid: Grid, spec: RunSpec, out_dir: Path, notebook: Path, extra: dict[str, Any] | None = None,
    force: bool = False, log_output: bool = False,
) -> RunOutcome:
    """Execute one run; never raises for a failure inside the notebook (it is recorded instead)."""
    import papermill as pm

    folder = run_folder(out_dir, spec)
    record_path = folder / RECORD_NAME
    params = _absolute_paths({
        **grid.parameters, **(extra or {}),
        "model": spec.model, "dataset": spec.dataset.name, "data_root": spec.dataset.data_root,
        "seed": spec.seed, "out_dir": str(folder.resolve()),
    })
    if record_path.is_file():
        previous = read_record(record_path)
        if previous.status == "ok" and not force:
            changed = sorted(k for k in set(params) | set(previous.parameters)
                             if params.get(k) != previous.parameters.get(k))
            why = f" with different parameters {changed} (tables will say MIXED)" if changed else ""
            return RunOutcome(spec.run_id, "skipped", folder, message=f"finished earlier{why}; --force reruns it")
        moved = _archive(folder, out_dir)
        note = f"previous {previous.status} run archived to {moved}"
    elif folder.exists():
        moved = _archive(folder, out_dir)  # an interrupted run: keep whatever it left
        note = f"interrupted run archived to {moved}"
    else:
        note = ""
    folder.mkdir(parents=True)
    nb_out = folder / NOTEBOOK_NAME
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(notebook), str(nb_out), parameters=params, kernel_name=grid.kernel, cwd=str(notebook.parent),
            progress_bar=False, log_output=log_output, execution_timeout=grid.cell_timeout_s or None,
        )
    except Exception as exc:  # noqa: BLE001 - any failure of one run is recorded; the grid goes on
        wall = time.perf_counter() - t0
        err = _error_info(exc, nb_out)
        write_record(_failed_record(grid, spec, params, err, wall), folder)
        where = f"cell {err['cell']}" if err["cell"] is not None else "before/after the cells"
        msg = f"{err['ename']}: {err['evalue']} ({where} of {nb_out})"
        return RunOutcome(spec.run_id, "failed", folder, wall, "; ".join(x for x in (note, msg) if x))
    wall = time.perf_counter() - t0
    if not record_path.is_file():
        err = {"cell": None, "exec_count": None, "ename": "MissingRecord", "source": "",
               "evalue": f"the notebook finished without writing {RECORD_NAME} into out_dir"}
        write_record(_failed_record(grid, spec, params, err, wall), folder)
        return RunOutcome(spec.run_id, "failed", folder, wall, err["evalue"])
    record = read_record(record_path)
    record.grid, record.notebook, record.parameters = grid.name, NOTEBOOK_NAME, params
    record.wall_time_s = {**record.wall_time_s, "notebook": wall}
    write_record(record, folder)
    return RunOutcome(spec.run_id, record.status, folder, wall, note)


def run_grid(
    grid: Grid, out_dir: str | os.PathLike, extra: dict[str, Any] | None = None, force: bool = False,
    only: Callable[[RunSpec], bool] | None = None, log: Callable[[str], None] = print, log_output: bool = False,
) -> list[RunOutcome]:
    """Run every (selected) run of ``grid`` into ``out_dir``; failures are recorded and do not stop the others.

    Args:
        grid: the grid to run.
        out_dir: results folder; runs go to ``out_dir/runs`` and the resolved grid to ``out_dir/grid-<name>.yaml``.
        extra: parameters added to the grid's shared ones (same for every run), e.g. a prior checkpoint.
        force: rerun finished runs (their folders are archived, never deleted).
        only: optional filter on the runs.
        log: progress sink, one line per run.
        log_output: stream the notebooks' output to this process's log.
    """
    out = Path(out_dir).resolve()
    clash = sorted(set(extra or {}) & set(RUNNER_PARAMETERS))
    if clash:
        raise ConfigError(f"{clash} are set per run from the grid's models/datasets/seeds and --out; edit the grid "
                          "file (e.g. its datasets' data_root) instead of overriding them")
    notebook = resolve_notebook(grid)
    check_parameters(notebook, [*grid.parameters, *(extra or {}), *RUNNER_PARAMETERS])
    check_kernel(grid.kernel)
    save_yaml({**dataclasses.asdict(grid), "resolved_extra": dict(extra or {})}, out / f"grid-{grid.name}.yaml")
    specs = [s for s in grid.runs() if only is None or only(s)]
    outcomes = []
    for i, spec in enumerate(specs, 1):
        log(f"[bench {grid.name}] run {i}/{len(specs)} {spec.run_id} ...")
        res = run_one(grid, spec, out, notebook, extra=extra, force=force, log_output=log_output)
        outcomes.append(res)
        tail = f" - {res.message}" if res.message else ""
        log(f"[bench {grid.name}] run {i}/{len(specs)} {spec.run_id}: {res.status} in {res.wall_s:.0f} s{tail}")
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        log(f"[bench {grid.name}] {len(failed)} of {len(outcomes)} runs failed: " + ", ".join(o.run_id for o in failed))
    return outcomes
