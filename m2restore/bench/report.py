"""Tables (CSV, Markdown, LaTeX) from benchmark records, and nothing else.

Everything here reads only the ``record.json`` files of a runs folder (:mod:`m2restore.bench.records`): deleting the
executed notebooks and checkpoints changes no number. Per dataset and colour space (RGB, Y) one table gives PSNR / SSIM
per degradation type and their average; with several seeds each cell is mean ± sample standard deviation (ddof=1)
over seeds. The protocol (colour space, crop border, data range, SSIM window, budget, seeds, hardware) is stated in
the caption. Published numbers (:mod:`m2restore.bench.published`) are appended as rows labelled 'paper-reported'.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import atomic_write_text
from .published import SOURCE, published_rows
from .records import AVERAGE, RunRecord, find_records, read_record

SPACES = ("rgb", "y")
PAPER = "paper-reported"
INPUT = "degraded input"  # the test inputs scored as they are: the floor every model should beat


def input_metrics(records: list[RunRecord], dataset: str) -> dict[str, dict[str, float]]:
    """Scores of the unrestored test inputs, from the first record of ``dataset`` that carries them."""
    for r in records:
        if r.status == "ok" and r.dataset == dataset and r.input_metrics:
            return r.input_metrics
    return {}


def records_frame(records: list[RunRecord]) -> pd.DataFrame:
    """Tidy frame of all successful runs: one row per run x type x colour space, with psnr and ssim columns."""
    rows = []
    for r in records:
        if r.status != "ok":
            continue
        for t, m in r.metrics.items():
            for space in SPACES:
                rows.append({
                    "dataset": r.dataset, "model": r.model, "family": r.family, "seed": r.seed, "type": t,
                    "space": space, "psnr": m[f"psnr_{space}"], "ssim": m[f"ssim_{space}"], "params": r.params,
                    "latency_ms": r.profile.get("latency_ms"), "gflops": r.profile.get("gflops_per_image"),
                    "budget_steps": r.budget.steps, "effective_batch": r.budget.effective_batch, "run_id": r.run_id,
                    "grid": r.grid, "git_commit": r.git_commit,
                })
    return pd.DataFrame(rows)


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (NaN for one seed) and seed count per dataset x model x type x space."""
    keys = ["dataset", "model", "type", "space"]
    g = frame.groupby(keys, sort=False)
    out = g.agg(
        psnr_mean=("psnr", "mean"), psnr_std=("psnr", "std"), ssim_mean=("ssim", "mean"), ssim_std=("ssim", "std"),
        n_seeds=("seed", "nunique"), params=("params", "first"), latency_ms=("latency_ms", "mean"),
    )
    return out.reset_index()


def _fmt(mean: float, std: float, n: int, digits: int) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 and not pd.isna(std) else "")


def _unique(values: list[Any]) -> str:
    seen = list(dict.fromkeys(str(v) for v in values))
    return seen[0] if len(seen) == 1 else "MIXED: " + " | ".join(seen)


def caption(records: list[RunRecord], dataset: str, space: str, with_paper: bool) -> str:
    """Protocol sentence for one table, built from the records' protocol, budget, seeds and hardware fields.

    A field that differs between the runs of the table is printed as 'MIXED: a | b' so that it cannot go unnoticed.
    """
    rs = [r for r in records if r.dataset == dataset and r.status == "ok"]
    seeds = sorted({r.seed for r in rs})

    def u(get: Any) -> str:
        return _unique([get(r) for r in rs])

    space_text = "RGB" if space == "rgb" else f"Y ({u(lambda r: r.protocol.y_channel)})"
    hardware = u(lambda r: f"{r.hardware.get('device', '?')} ({r.hardware.get('gpu') or r.hardware.get('cpu', '?')})")
    data_range = u(lambda r: f"{r.protocol.data_range:g}")
    text = (
        f"{dataset} ({u(lambda r: r.dataset_version or '-')}): PSNR (dB) / SSIM on {space_text}, "
        f"crop_border={u(lambda r: r.protocol.crop_border)}, data range [0, {data_range}], "
        f"8-bit rounding {u(lambda r: 'on' if r.protocol.quantize_8bit else 'off')}, "
        f"SSIM {u(lambda r: r.protocol.ssim)}; average = {u(lambda r: r.protocol.average)}. "
        f"Budget: {u(lambda r: r.budget.steps)} iterations x effective batch {u(lambda r: r.budget.effective_batch)} "
        f"(patch {u(lambda r: r.budget.patch_size)}, lr {u(lambda r: f'{r.budget.lr:g}')}), identical for every model. "
        + (f"Mean ± sample std over {len(seeds)} seeds {seeds}. " if len(seeds) > 1 else f"One run, seed {seeds[0]}. ")
        + f"Hardware: {hardware}."
    )
    if with_paper:
        text += (
            f" Rows marked '{PAPER}' are copied from the publications ({SOURCE}): full data, full-size models and "
            "the papers' own protocol; they are not re-measured and not comparable with the measured rows."
        )
    return text


def latency_note(records: list[RunRecord], dataset: str) -> str:
    """How the latency column was measured, from the records' profile fields."""
    rs = [r for r in records if r.dataset == dataset and r.status == "ok" and r.profile.get("latency_ms") is not None]
    if not rs:
        return ""
    how = _unique([f"median of {r.profile.get('repeats', '?')} forward passes of one {r.profile.get('size', '?')}"
                   f"x{r.profile.get('size', '?')} image on {r.profile.get('device', '?')} "
                   f"({r.profile.get('threads', '?')} threads)" for r in rs])
    return f" Latency: {how}, measured inside each run (other load on the machine inflates it)."


def _order(values: list[str]) -> list[str]:
    out = list(dict.fromkeys(values))
    return [v for v in out if v != AVERAGE] + ([AVERAGE] if AVERAGE in out else [])


def per_type_table(
    summary: pd.DataFrame, dataset: str, space: str, inputs: dict[str, dict[str, float]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(formatted, numeric) tables: rows = models (+ the degraded input, + paper rows), columns = types, average."""
    s = summary[(summary.dataset == dataset) & (summary.space == space)]
    types = _order(list(s["type"]))
    fmt_rows, num_rows = [], []
    for model, ms in s.groupby("model", sort=False):
        by_type = ms.set_index("type")
        n = int(ms["n_seeds"].max())
        fmt_rows.append({"model": model, "source": "measured", "seeds": str(n), **{
            t: (_fmt(by_type.psnr_mean[t], by_type.psnr_std[t], n, 2) + " / "
                + _fmt(by_type.ssim_mean[t], by_type.ssim_std[t], n, 3)) if t in by_type.index else "–"
            for t in types
        }})
        num = {"model": model, "source": "measured", "seeds": n}
        for t in types:
            for k in ("psnr_mean", "psnr_std", "ssim_mean", "ssim_std"):
                num[f"{t}_{k}"] = by_type[k].get(t)
        num_rows.append(num)
    if inputs:
        fmt_rows.append({"model": INPUT, "source": "input", "seeds": "–", **{
            t: f"{inputs[t][f'psnr_{space}']:.2f} / {inputs[t][f'ssim_{space}']:.3f}" if t in inputs else "–"
            for t in types
        }})
        num_rows.append({"model": INPUT, "source": "input", "seeds": None, **{
            f"{t}_{m}_mean": inputs[t][f"{m}_{space}"] for t in types if t in inputs for m in ("psnr", "ssim")
        }})
    for label, values in published_rows(dataset).items():
        fmt_rows.append({"model": f"{label} ({PAPER})", "source": PAPER, "seeds": "–", **{
            t: f"{values[t][0]:.2f} / {values[t][1]:.3f}" if t in values else "–" for t in types
        }})
        num_rows.append({"model": label, "source": PAPER, "seeds": None, **{
            f"{t}_{k}": (values[t][i] if t in values else None)
            for t in types for i, k in ((0, "psnr_mean"), (1, "ssim_mean"))
        }})
    return pd.DataFrame(fmt_rows), pd.DataFrame(num_rows)


def headline_table(
    summary: pd.DataFrame, dataset: str, inputs: dict[str, dict[str, float]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(formatted, numeric) average-over-types table per model: params, latency, PSNR/SSIM on RGB and Y."""
    s = summary[(summary.dataset == dataset) & (summary.type == AVERAGE)]
    fmt_rows, num_rows = [], []
    for model, ms in s.groupby("model", sort=False):
        by = ms.set_index("space")
        n = int(ms["n_seeds"].max())
        lat = by.latency_ms.get("rgb")
        num = {"model": model, "source": "measured", "seeds": n, "params": int(by.params.get("rgb")), "latency_ms": lat}
        row = {"model": model, "source": "measured", "seeds": str(n), "params (M)": f"{num['params'] / 1e6:.2f}",
               "latency (ms)": "–" if pd.isna(lat) else f"{lat:.0f}"}
        for space, label in (("rgb", "RGB"), ("y", "Y")):
            for metric, digits in (("psnr", 2), ("ssim", 3)):
                mean, std = by[f"{metric}_mean"].get(space), by[f"{metric}_std"].get(space)
                row[f"{metric.upper()} {label}"] = _fmt(mean, std, n, digits)
                num[f"{metric}_{space}_mean"], num[f"{metric}_{space}_std"] = mean, std
        fmt_rows.append(row)
        num_rows.append(num)
    order = sorted(range(len(num_rows)), key=lambda i: -num_rows[i]["psnr_rgb_mean"])
    fmt_rows, num_rows = [fmt_rows[i] for i in order], [num_rows[i] for i in order]
    if inputs and AVERAGE in inputs:
        avg, cols = inputs[AVERAGE], [(sp, lab, m, d) for sp, lab in (("rgb", "RGB"), ("y", "Y"))
                                      for m, d in (("psnr", 2), ("ssim", 3))]
        fmt_rows.append({"model": INPUT, "source": "input", "seeds": "–", "params (M)": "–", "latency (ms)": "–",
                         **{f"{m.upper()} {lab}": f"{avg[f'{m}_{sp}']:.{d}f}" for sp, lab, m, d in cols}})
        num_rows.append({"model": INPUT, "source": "input", **{f"{m}_{sp}_mean": avg[f"{m}_{sp}"]
                                                              for sp, _, m, _ in cols}})
    for label, values in published_rows(dataset).items():
        if AVERAGE in values:
            psnr, ssim = values[AVERAGE]
            fmt_rows.append({"model": f"{label} ({PAPER})", "source": PAPER, "seeds": "–", "params (M)": "–",
                             "latency (ms)": "–", "PSNR RGB": f"{psnr:.2f}", "SSIM RGB": f"{ssim:.3f}",
                             "PSNR Y": "–", "SSIM Y": "–"})
            num_rows.append({"model": label, "source": PAPER, "psnr_rgb_mean": psnr, "ssim_rgb_mean": ssim})
    return pd.DataFrame(fmt_rows), pd.DataFrame(num_rows)


def to_markdown(table: pd.DataFrame, title: str) -> str:
    """A GitHub Markdown table under a bold caption line."""
    cols = [str(c) for c in table.columns]
    lines = [f"**{title}**", "", "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("±", r"$\pm$"), ("–", "--"), ("×", r"$\times$")):
        text = text.replace(a, b)
    return text


def to_latex(table: pd.DataFrame, title: str, label: str) -> str:
    """A booktabs LaTeX table with caption and label (needs \\usepackage{booktabs})."""
    cols = [str(c) for c in table.columns]
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{_tex(title)}}}", rf"\label{{{label}}}",
             r"\begin{tabular}{" + "l" * 3 + "c" * (len(cols) - 3) + "}", r"\toprule",
             " & ".join(_tex(c) for c in cols) + r" \\", r"\midrule"]
    rows = list(table.itertuples(index=False))
    for i, row in enumerate(rows):
        if i and row[1] != rows[i - 1][1]:
            lines.append(r"\midrule")
        lines.append(" & ".join(_tex(str(v)) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    out_dir: Path
    tables: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    n_ok: int = 0
    failed: list[RunRecord] = field(default_factory=list)
    markdown: str = ""


def _write_table(out: Path, stem: str, fmt: pd.DataFrame, num: pd.DataFrame, title: str) -> list[Path]:
    paths = [out / f"{stem}.csv", out / f"{stem}.md", out / f"{stem}.tex"]
    atomic_write_text(paths[0], num.to_csv(index=False))
    atomic_write_text(paths[1], to_markdown(fmt, title))
    atomic_write_text(paths[2], to_latex(fmt, title, f"tab:{stem}"))
    return paths


def build_report(runs_dir: str | os.PathLike, out_dir: str | os.PathLike, figures: bool = True) -> Report:
    """Write tables (and figures) for every dataset in ``runs_dir``'s records into ``out_dir``; return what was written.

    Args:
        runs_dir: a folder searched recursively for ``record.json``.
        out_dir: gets ``tables/`` (CSV, Markdown, LaTeX), ``figures/`` (PNG) and ``report.md``.
        figures: also draw the seaborn figures (tables never depend on them).
    """
    paths = find_records(runs_dir)
    records = [read_record(p) for p in paths]
    out = Path(out_dir)
    rep = Report(out, n_ok=sum(r.status == "ok" for r in records), failed=[r for r in records if r.status != "ok"])
    ok = [r for r in records if r.status == "ok"]
    md = [f"# Benchmark report\n\n{rep.n_ok} finished run(s), {len(rep.failed)} failed, from `{runs_dir}`.\n"]
    if ok:
        frame = records_frame(ok)
        summary = summarise(frame)
        atomic_write_text(out / "tables" / "runs.csv", frame.to_csv(index=False))
        atomic_write_text(out / "tables" / "summary.csv", summary.to_csv(index=False))
        rep.tables += [out / "tables" / "runs.csv", out / "tables" / "summary.csv"]
        for dataset in dict.fromkeys(frame["dataset"]):
            has_paper = bool(published_rows(dataset))
            inputs = input_metrics(ok, dataset)
            fmt, num = headline_table(summary, dataset, inputs)
            title = "Average over degradation types. " + caption(ok, dataset, "rgb", has_paper).replace(
                "on RGB,", "on RGB and on Y,"
            ) + latency_note(ok, dataset)
            rep.tables += _write_table(out / "tables", f"{dataset}_summary", fmt, num, title)
            md += [f"## {dataset}\n", to_markdown(fmt, title)]
            for space in SPACES:
                fmt, num = per_type_table(summary, dataset, space, inputs)
                title = f"Per degradation type. {caption(ok, dataset, space, has_paper)}"
                rep.tables += _write_table(out / "tables", f"{dataset}_{space}", fmt, num, title)
                md.append(to_markdown(fmt, title))
    if figures and ok:
        from .figures import make_figures

        rep.figures = make_figures(list(zip(paths, records, strict=True)), out / "figures")
        md.append("## Figures\n")
        md += [f"![{p.stem}]({p.relative_to(out).as_posix()})\n" for p in rep.figures]
    if rep.failed:
        md.append("## Failed runs\n")
        for r in rep.failed:
            e = r.error
            md.append(f"- `{r.run_id}`: {e.get('ename')}: {e.get('evalue')} (cell {e.get('cell')}: "
                      f"`{e.get('source', '')}`), notebook `{r.run_id}/{r.notebook}`")
        md.append("")
    rep.markdown = "\n".join(md)
    atomic_write_text(out / "report.md", rep.markdown)
    return rep
