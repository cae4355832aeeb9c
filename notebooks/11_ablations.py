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
# # 11 · Ablations: what each switch of `M2RestoreConfig` is worth
#
# M2Restore stacks several ideas on AdaIR's network: a CLIP degradation prior, a per-image task prompt, a mixture of
# experts before each encoder level, and a bottleneck with a Mamba (global) and a CNN (local) stream mixed by a gate.
# Every one of them is a switch of `M2RestoreConfig`. Here each switch is flipped on its own, the variant is trained
# with **one identical budget** (same data, crops, data order, steps, learning rate and seed) and scored on the same
# test set, so the difference to the full model is the switch's contribution, within the noise of one short run.
#
# What you will learn:
# - every ablation switch, what it removes or replaces, and what it costs in parameters;
# - how to run a controlled ablation with the package (`build_model` overrides, `train`, `evaluate`);
# - which components help and which hurt at a given budget, per degradation type, and how sure we can be (seeds).
#
# The default budget is a few minutes per variant on a CPU; raise `budget_steps` and add `seeds` for the analysis
# behind the question "which component helps, which hurts". Runs are cached per budget in `out_dir`: an
# interrupted sweep continues where it stopped.

# %% tags=["parameters"]
smoke = False
device = "cpu"
seed = 0
seeds = []
out_dir = ""
dataset = "mini-cdd11"
data_root = ""
base_model = "m2restore_tiny"
variants = []
budget_steps = 150
batch_size = 4
patch_size = 64
lr = 0.0005
warmup_steps = 20
prior_checkpoint = ""
prior_minutes = 2.0
eval_limit = 0

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import display

import m2restore
from m2restore.models.base import count_parameters
from m2restore.models.m2restore import M2Restore, make_prior
from m2restore.notebook import resolve_data, resolve_prior, setup

out_dir = setup("11_ablations", out_dir, device, seed)  # output folder, device check, torch seed
seeds = list(seeds) or [seed]

# name -> (config overrides, what changes)
ABLATIONS = {
    "full": ({}, "the paper design, every component on"),
    "no_clip_prior": ({"use_clip_prior": False}, "no CLIP prior: router without prior bias, gate without embedding"),
    "no_task_prompt": ({"use_task_prompt": False}, "router sees pixel features only (no task prompt)"),
    "no_moe": ({"use_moe": False}, "no routing layers before the encoder levels (and no task prompt)"),
    "no_mamba": ({"use_mamba": False}, "bottleneck: CNN stream only"),
    "no_cnn": ({"use_cnn": False}, "bottleneck: Mamba stream only"),
    "gate_learned": ({"gate": "learned"}, "the release's learned gate on [x, CLIP embedding] instead of edges"),
    "gate_fixed": ({"gate": "fixed"}, "a fixed 0.5 / 0.5 mix of the two streams"),
    "gate_image_embedding": ({"gate_embedding": "image"}, "gate fed CLIP's content embedding (release)"),
    "scan_bidirectional": ({"scan": "bidirectional"}, "Mamba scans rows forward and backward"),
    "scan_four": ({"scan": "four"}, "Mamba scans rows and columns, both ways (VMamba's cross-scan)"),
    "combine_linear": ({"moe_combine": "linear"}, "experts combined as sum g y instead of log sum g exp(y)"),
    "calibration_release": ({"calibration": "release"}, "the release's additive CLIP bias instead of ours"),
    "experts_6_top1": ({"top_k": 1}, "6 experts, top-1 routing"),
    "experts_4_top1": ({"num_experts": 4, "top_k": 1}, "4 experts, top-1 routing"),
    "experts_8_top2": ({"num_experts": 8, "top_k": 2}, "8 experts, top-2 routing"),
}
if smoke:  # two runs of 2 steps: the full model and one switch
    variants, seeds = ["full", "no_clip_prior"], seeds[:1]
    budget_steps, batch_size, patch_size, warmup_steps = 2, 2, 32, 0
variants = list(variants) or list(ABLATIONS)
unknown = [v for v in variants if v not in ABLATIONS]
if unknown:
    raise ValueError(f"unknown variants {unknown}; choose from {list(ABLATIONS)}")
if "full" not in variants:
    variants = ["full", *variants]  # every delta is measured against it
sns.set_theme(style="whitegrid", context="notebook")
print(f"{len(variants)} variants x seeds {seeds}: {budget_steps} steps of batch {batch_size} x {patch_size}px, "
      f"lr {lr:g}, on {device}")

# %% [markdown]
# ## 1 · Data and the shared prior
#
# Every variant trains on the same mini CDD-11 (`data_root`, else `make demo`'s, else one built here) and, if it
# uses one, reads the **same** frozen CLIP prior (`prior_checkpoint`, else `make demo`'s, else one trained here for
# `prior_minutes`; smoke mode: the untrained prior). An untrained prior carries no information, which would make
# the `no_clip_prior` row meaningless, so a full run should use a trained one.

# %%
from m2restore.data import build_dataset

root = resolve_data(data_root, out_dir, smoke, dataset)  # data_root, else `make demo`'s, else built here
prior_path = resolve_prior(prior_checkpoint, root, out_dir, smoke, prior_minutes)  # None: untrained (smoke)
prior_fields = {"prior_checkpoint": str(prior_path)} if prior_path is not None else {}
shared_prior = make_prior(m2restore.get_config(base_model, **prior_fields))  # built once, lent to every variant
with torch.no_grad():
    has_degra = shared_prior(torch.rand(1, 3, 64, 64)).degra_embed is not None
if not has_degra and "gate_image_embedding" in variants:  # the gate would read the same embedding as 'full'
    variants.remove("gate_image_embedding")
    print("gate_image_embedding skipped: this prior has one embedding only (DA-CLIP has a separate degradation one)")

test_set = build_dataset(dataset, root, "test", patch_size=None)
eval_set = test_set
if eval_limit and len(test_set) > eval_limit:  # spread evenly, so that every type keeps images
    keep = torch.linspace(0, len(test_set) - 1, eval_limit).round().long().unique().tolist()
    eval_set = torch.utils.data.Subset(test_set, keep)
print(f"data {root}: {len(build_dataset(dataset, root, 'train'))} training pairs, {len(eval_set)} test images")
print(f"prior: {prior_path or 'untrained tiny CLIP (smoke mode)'}")


def build_variant(name: str) -> torch.nn.Module:
    """``base_model`` with the variant's overrides, sharing the one frozen prior (the seed is set by the caller)."""
    overrides, _ = ABLATIONS[name]
    cfg = m2restore.get_config(base_model, **prior_fields, **overrides)
    net = M2Restore(cfg, prior=shared_prior if cfg.use_clip_prior else None)
    net.preset_name = base_model  # what build_model sets; the trainer and checkpoints read it
    return net


# %% [markdown]
# ## 2 · The switches and their parameter cost
#
# Parameters are counted without the frozen prior (it is outside the module tree). The scan order and the gate's
# embedding change the computation, not the parameters; the fixed gate removes the gate's layers; dropping a stream
# removes its layers.

# %%
rows = []
for name in variants:
    net = build_variant(name)
    rows.append({"variant": name, "overrides": ABLATIONS[name][0] or "-", "what changes": ABLATIONS[name][1],
                 "params": count_parameters(net)})
switches = pd.DataFrame(rows).set_index("variant")
switches["params vs full"] = switches["params"] - switches.loc["full", "params"]
with pd.option_context("display.max_colwidth", 90):
    display(switches)

# %% [markdown]
# ## 3 · One identical budget for every variant
#
# Each run: $\mathcal L = \lVert f(x) - y \rVert_1 + 0.01 \sum \text{balance}$, AdamW with `lr`, `warmup_steps`
# linear warm-up then cosine to zero over `budget_steps`, gradient norm clipped at 1, batches of `batch_size` random
# `patch_size` crops in the order fixed by the seed. The seed also fixes the initialisation (set right before each
# model is built), so two variants differ only where their architectures differ. The score is the papers' CDD-11
# average: the mean over the 11 types of the per-type mean PSNR, on RGB and on Y (8-bit, no border crop).

# %%
from m2restore.eval import evaluate
from m2restore.train import set_seed, train
from m2restore.train.cli import recipe_path

budget_dir = out_dir / f"{base_model}_{budget_steps}steps_b{batch_size}_p{patch_size}_lr{lr:g}_w{warmup_steps}"
results, per_type = [], {}
for s in seeds:
    for name in variants:
        set_seed(s)
        net = build_variant(name)
        t0 = time.perf_counter()
        run = train(
            config_file=recipe_path("cpu-tiny"), model=net, seed=s, out_dir=str(budget_dir / f"{name}-seed{s}"),
            resume="auto", data={"dataset": dataset, "root": str(root), "patch_size": patch_size,
                                 "batch_size": batch_size, "val_split": ""},
            train={"max_steps": budget_steps, "lr": lr, "warmup_steps": warmup_steps, "grad_clip": 1.0,
                   "log_interval": max(1, budget_steps // 20), "val_interval": 0, "save_interval": 0,
                   "tensorboard": False, "progress": False, "precision": "fp32" if device == "cpu" else "auto"},
        )
        train_s = time.perf_counter() - t0
        res = evaluate(run.model, eval_set, metrics=["psnr"], device=device, progress=False)
        losses = [r["loss"] for r in run.history["train"]]
        results.append({"variant": name, "seed": s, "psnr_rgb": res.average["psnr_rgb"],
                        "psnr_y": res.average["psnr_y"], "final_loss": losses[-1] if losses else float("nan"),
                        "train_s": train_s})
        per_type[(name, s)] = {t: v["psnr_rgb"] for t, v in res.per_type.items()}
        print(f"seed {s} {name:>22}: {res.average['psnr_rgb']:.3f} dB RGB, {res.average['psnr_y']:.3f} dB Y "
              f"({train_s:.0f} s training{', reused' if not losses else ''})")
runs = pd.DataFrame(results)
runs.to_csv(budget_dir / "runs.csv", index=False)

# %% [markdown]
# ## 4 · The table
#
# $\Delta$ is the variant's PSNR minus the full model's, per seed, then averaged: a paired comparison, which cancels
# what every variant shares (the seed's data order and the test set). With several seeds the ± is the standard
# deviation of that paired difference.

# %%
full = runs[runs.variant == "full"].set_index("seed")
runs["delta_rgb"] = runs.psnr_rgb - runs.seed.map(full.psnr_rgb)
runs["delta_y"] = runs.psnr_y - runs.seed.map(full.psnr_y)
agg = runs.groupby("variant", sort=False).agg(
    psnr_rgb=("psnr_rgb", "mean"), psnr_y=("psnr_y", "mean"), delta_rgb=("delta_rgb", "mean"),
    delta_rgb_std=("delta_rgb", "std"), delta_y=("delta_y", "mean"), train_s=("train_s", "mean"),
)
table = switches[["params", "params vs full"]].join(agg)
table["n_seeds"] = len(seeds)
table.to_csv(budget_dir / "ablation_table.csv")
table.round(3)

# %%
order = table.drop(index="full").sort_values("delta_rgb")
fig, axes = plt.subplots(1, 2, figsize=(14, 0.38 * len(table) + 1.8), gridspec_kw={"width_ratios": [1.3, 1]})
ax = axes[0]
colors = ["tab:red" if d < 0 else "tab:green" for d in order.delta_rgb]
ax.barh(order.index, order.delta_rgb, xerr=order.delta_rgb_std.fillna(0) if len(seeds) > 1 else None, color=colors)
ax.axvline(0, color="black", lw=0.8)
ax.set(xlabel="PSNR (RGB) minus the full model's (dB)",
       title=f"{budget_steps} steps, {len(seeds)} seed(s): left = worse than full")
ax = axes[1]
ax.scatter(table["params"] / 1e6, table.psnr_rgb, color="tab:blue")
for name, r in table.iterrows():
    ax.annotate(name, (r["params"] / 1e6, r.psnr_rgb), fontsize=7, xytext=(3, 2), textcoords="offset points")
ax.set(xlabel="parameters (M)", ylabel="average PSNR RGB (dB)", title="quality vs size")
fig.tight_layout()
fig.savefig(budget_dir / "ablations.png", dpi=80, bbox_inches="tight")

# %% [markdown]
# ### Per degradation type
#
# The average can hide trade-offs: a switch may help the low-light types and hurt the haze types. $\Delta$ PSNR per
# type (mean over seeds), red where the variant is worse than the full model:

# %%
delta_types = pd.DataFrame({
    name: pd.DataFrame([pd.Series(per_type[(name, s)]) - pd.Series(per_type[("full", s)]) for s in seeds]).mean()
    for name in variants if name != "full"
}).T  # rows variants, columns types
fig, ax = plt.subplots(figsize=(12, 0.38 * len(delta_types) + 1.6))
lim = float(np.nanmax(np.abs(delta_types.values))) or 1.0
sns.heatmap(delta_types, cmap="RdYlGn", center=0, vmin=-lim, vmax=lim, annot=True, fmt=".2f", ax=ax,
            annot_kws={"fontsize": 7}, cbar_kws={"label": "dB vs full"})
ax.set(xlabel="", ylabel="")
fig.tight_layout()

# %% [markdown]
# ## 5 · Which component helps, which hurts
#
# A removal that *lowers* the PSNR means the component helps at this budget; a removal that raises it means the
# component costs more than it gives here (extra parameters to fit, a harder optimisation, or a prior that carries
# no information). The noise level matters: with one seed, a few tenths of a dB on a mini test set can be chance;
# with several seeds, a difference is called clear when it exceeds twice its standard error.

# %%
noise = (order.delta_rgb_std / np.sqrt(len(seeds))) if len(seeds) > 1 else None
for name, r in order.iterrows():
    direction = "above" if r.delta_rgb > 0 else "below"
    if noise is None:
        verdict = f"{direction} full (one seed: no noise estimate)"
    elif abs(r.delta_rgb) <= 2 * noise[name]:
        verdict = "within noise"
    else:
        verdict = f"clearly {direction} full"
    extra = int(r["params vs full"])
    print(f"{name:>22}: {r.delta_rgb:+.3f} dB RGB, {r.delta_y:+.3f} dB Y, {extra:+,} params -> {verdict}")
if len(seeds) == 1:
    print("\none seed: rerun with seeds=[0, 1, 2] (and a larger budget_steps) before drawing conclusions")
