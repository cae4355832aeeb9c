"""Every notebook: paired with its jupytext ``.py``, committed without outputs, one ``parameters`` cell of plain
literals with a ``smoke`` switch, and executing top to bottom under papermill with ``smoke=True``.

Notebooks are collected by glob, so a notebook added to ``notebooks/`` is tested without editing this file. The
execution tests carry the ``notebook`` marker (``pytest -m "not notebook"`` skips them) and a timeout each.
"""
from __future__ import annotations

import ast
import math
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SOURCES = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
SMOKE_TIMEOUT_S = 600  # per notebook, generous for a loaded 2-core machine (smoke mode aims at < 60 s alone)


def _id(path: Path) -> str:
    return path.stem


def _parameters_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]


@pytest.mark.parametrize("py", SOURCES, ids=_id)
def test_py_and_ipynb_are_in_sync(py: Path) -> None:
    import jupytext

    ipynb = py.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{ipynb.name} is missing: run `.venv/bin/jupytext --to ipynb notebooks/{py.name}`"
    text, nb = jupytext.read(py), nbformat.read(ipynb, as_version=4)
    want = [(c.cell_type, c.source.strip()) for c in text.cells]
    have = [(c.cell_type, c.source.strip()) for c in nb.cells]
    assert have == want, f"{ipynb.name} differs from {py.name}: run `.venv/bin/jupytext --sync notebooks/{py.name}`"


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=_id)
def test_ipynb_has_source_outputs_free_and_literal_parameters(ipynb: Path) -> None:
    assert ipynb.with_suffix(".py").is_file(), f"{ipynb.name} has no paired .py (jupytext py:percent)"
    nb = nbformat.read(ipynb, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{ipynb.name}: cells {dirty} hold outputs; clear them (jupytext --to ipynb regenerates it)"
    cells = _parameters_cells(nb)
    assert len(cells) == 1, f"{ipynb.name}: needs exactly one cell tagged 'parameters', found {len(cells)}"
    names = []
    for stmt in ast.parse(cells[0].source).body:
        assert isinstance(stmt, (ast.Assign, ast.AnnAssign)), f"{ipynb.name}: parameters cell has a non-assignment"
        ast.literal_eval(stmt.value)  # plain literals only; derived values belong in the next cell
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    assert "smoke" in names, f"{ipynb.name}: the parameters cell needs a `smoke = False` switch"


@pytest.mark.notebook
@pytest.mark.timeout(SMOKE_TIMEOUT_S)
@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=_id)
def test_notebook_executes_in_smoke_mode(ipynb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import papermill as pm

    declared = pm.inspect_notebook(str(ipynb))
    params = {"smoke": True}
    if "out_dir" in declared:
        params["out_dir"] = str(tmp_path / "out")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    pm.execute_notebook(
        str(ipynb), str(tmp_path / ipynb.name), parameters=params, kernel_name="python3", cwd=str(NOTEBOOK_DIR),
        progress_bar=False, execution_timeout=SMOKE_TIMEOUT_S,
    )
    record = tmp_path / "out" / "record.json"
    if record.is_file():  # a benchmark notebook: its record must be valid and its numbers sane
        from m2restore.bench.records import read_record

        r = read_record(record)
        assert r.status == "ok" and r.params > 0
        avg = r.metrics["average"]
        assert 5.0 < avg["psnr_rgb"] < 60.0 and 0.0 < avg["ssim_rgb"] <= 1.0 and math.isfinite(avg["psnr_y"])
