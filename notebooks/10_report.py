# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python (m2restore)
#     language: python
#     name: m2restore
# ---

# %% [markdown]
# # 10 · The report: tables and figures from all runs
#
# Every run of a benchmark grid (notebook 09, executed by `m2restore bench`) leaves a `record.json`. This notebook
# reads those records, and nothing else, and turns them into the comparison: CSV, Markdown and LaTeX tables per
# degradation type and on average, on RGB and on Y, and seaborn figures. `m2restore bench report --runs DIR --out DIR`
# produces the same files without the commentary.
#
# What you will learn:
# - why tables must come from result files (a number in a table can be traced to one run, its protocol, its commit);
# - how several seeds become "mean ± std", and why a *paired* comparison (same seed, same data) is sharper;
# - how to read the published numbers next to ours: labelled "paper-reported", never mixed in.

# %% tags=["parameters"]
runs_dir = "../benchmarks/results/demo/runs"
out_dir = "_outputs/10_report"
reference_model = "m2restore_tiny"
smoke = False

# %%
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import Image, Markdown, display

from m2restore.bench import pipeline
from m2restore.bench.records import find_records, load_records
from m2restore.bench.report import build_report, records_frame, summarise

out = Path(out_dir)
if smoke:
    # a real, tiny benchmark in this process: two models x two seeds, two training steps, four test images each
    from m2restore.data import make_mini_cdd11

    runs_dir = str(out / "runs")
    data = make_mini_cdd11(out / "data", size=64, n_train=2, n_test=1)
    for model in (reference_model, "adair_tiny"):
        for seed in (0, 1):
            folder = Path(runs_dir) / "mini-cdd11" / model / f"seed{seed}"
            if not (folder / "record.json").is_file():
                pipeline.run_benchmark(pipeline.RunSettings(
                    model=model, dataset="mini-cdd11", data_root=str(data), seed=seed, out_dir=str(folder),
                    eval_limit=4, smoke=True,
                ))
if not Path(runs_dir).is_dir():
    raise FileNotFoundError(f"{runs_dir}: no runs yet. Run `make demo` (or `m2restore bench --grid ...`) first")

# %% [markdown]
# ## 1 · The records
#
# One row per run; failed runs are kept (their record names the notebook cell that raised) but never enter a table.

# %%
records = load_records(runs_dir)
overview = pd.DataFrame([{
    "run": r.run_id, "status": r.status, "params": r.params, "steps": r.budget.steps,
    "avg PSNR RGB": r.metrics.get("average", {}).get("psnr_rgb"), "train s": r.wall_time_s.get("train"),
    "scan": r.scan_backend, "commit": r.git_commit[:8],
} for r in records])
overview

# %% [markdown]
# ## 2 · Tables
#
# With $n$ seeds, every cell is $\bar{x} \pm s$ with $\bar{x} = \frac{1}{n} \sum_i x_i$ and the sample standard
# deviation $s = \sqrt{\frac{1}{n-1} \sum_i (x_i - \bar{x})^2}$; $x_i$ is the run's mean over the types (or one
# type's mean). The caption states the protocol, read from the records; a field that differs between runs of one
# table would be printed as `MIXED`.

# %%
report = build_report(runs_dir, out)
for path in sorted((out / "tables").glob("*.md")):
    display(Markdown(path.read_text()))

# %% [markdown]
# ### From scratch: mean ± std over seeds
#
# The summary table again, in plain numpy from the records, checked against the package.

# %%
summary = summarise(records_frame(records))
ok = [r for r in records if r.status == "ok"]
for (dataset, model), group in pd.DataFrame([(r.dataset, r.model, r.metrics["average"]["psnr_rgb"]) for r in ok],
                                            columns=["dataset", "model", "psnr"]).groupby(["dataset", "model"]):
    x = group["psnr"].to_numpy()
    mean = x.sum() / len(x)
    std = np.sqrt(((x - mean) ** 2).sum() / (len(x) - 1)) if len(x) > 1 else np.nan
    row = summary[(summary.dataset == dataset) & (summary.model == model) & (summary.type == "average")
                  & (summary.space == "rgb")].iloc[0]
    assert np.isclose(mean, row.psnr_mean) and (np.isnan(std) or np.isclose(std, row.psnr_std))
    print(f"{dataset:>12} {model:<16} {mean:6.2f} ± {std:.2f} dB over {len(x)} seed(s)")

# %% [markdown]
# ## 3 · The comparison, paired by seed
#
# Runs with the same seed share data order and crops, so the per-seed difference
# $d_i = \mathrm{PSNR}_i^{\text{ref}} - \mathrm{PSNR}_i^{\text{baseline}}$ removes the variation the two runs have in
# common: $\bar{d} \pm s_d$ is a sharper statement than comparing two means ± std.

# %%
table = pd.DataFrame([(r.dataset, r.model, r.seed, r.metrics["average"]["psnr_rgb"]) for r in ok],
                     columns=["dataset", "model", "seed", "psnr"])
rows = []
for dataset, d in table.groupby("dataset"):
    wide = d.pivot(index="seed", columns="model", values="psnr")
    if reference_model not in wide:
        continue
    for other in wide.columns.drop(reference_model):
        diff = (wide[reference_model] - wide[other]).dropna()
        rows.append({"dataset": dataset, "comparison": f"{reference_model} − {other}", "seeds": len(diff),
                     "mean Δ (dB)": diff.mean(), "std Δ": diff.std(), "wins": int((diff > 0).sum())})
paired = pd.DataFrame(rows)
paired.round(3) if len(paired) else "the reference model has no runs here"

# %% [markdown]
# ## 4 · Figures
#
# Per-type PSNR bars (error bars: std over seeds), quality against parameters and against latency, training curves
# and a visual comparison on test crops, all drawn from the records (and the small sample files they name).

# %%
for path in report.figures:
    print(path.name)
    display(Image(filename=str(path)))

# %% [markdown]
# ## 5 · Failed runs
#
# A failed run never stops the grid; its record names the exception and the cell of the executed notebook
# (`run.ipynb` in the run's folder) where it happened.

# %%
failed = [{"run": r.run_id, "error": f"{r.error.get('ename')}: {r.error.get('evalue')}", "cell": r.error.get("cell")}
          for r in records if r.status != "ok"]
pd.DataFrame(failed) if failed else f"no failed runs among {len(find_records(runs_dir))} records"
