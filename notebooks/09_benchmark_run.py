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
# # 09 · One benchmark run (papermill-parameterised)
#
# `m2restore bench --grid FILE.yaml` executes this notebook once per **model × dataset × seed** of a grid, with
# papermill injecting the parameters below. Run by hand, it trains and scores one model. Every step is a function of
# `m2restore.bench.pipeline`; the notebook calls them in order and shows what each produced.
#
# What you will learn:
# - what makes a comparison *fair*: the same training data, the same budget (iterations × effective batch × patch),
#   the same seed and the same measuring protocol for every model;
# - how the numbers are measured: PSNR and SSIM per degradation type, on RGB **and** on the BT.601 Y channel, and
#   the papers' average, the mean of the per-type means;
# - what the run leaves behind: `record.json`, the only input of the tables and figures of notebook 10.

# %% tags=["parameters"]
model = "m2restore_tiny"
dataset = "mini-cdd11"
data_root = ""
device = "cpu"
budget_steps = 300
batch_size = 8
grad_accum = 1
patch_size = 64
lr = 0.001
warmup_steps = 0
grad_clip = 0.0
threads = 0
prior_checkpoint = ""
profile_size = 128
eval_limit = 0
seed = 0
smoke = False
out_dir = ""

# %%
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from m2restore.bench import pipeline

parameters = dict(
    model=model, dataset=dataset, data_root=data_root, device=device, budget_steps=budget_steps,
    batch_size=batch_size, grad_accum=grad_accum, patch_size=patch_size, lr=lr, warmup_steps=warmup_steps,
    grad_clip=grad_clip, threads=threads, prior_checkpoint=prior_checkpoint, profile_size=profile_size,
    eval_limit=eval_limit, seed=seed, smoke=smoke, out_dir=out_dir,
)
# run by hand without out_dir: a fresh folder, so that nothing is overwritten
out_dir = out_dir or f"_outputs/09_benchmark_run/{model}-{dataset}-seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
settings = pipeline.RunSettings(**{**parameters, "out_dir": out_dir})
if smoke:
    settings = pipeline.smoke_settings(settings)
if threads > 0:
    torch.set_num_threads(threads)
sns.set_theme(style="whitegrid", context="notebook")
wall = {}
settings

# %% [markdown]
# ## 1 · Data
#
# The grid passes `data_root`; without one, a mini dataset is built offline from scikit-image's bundled photographs
# (the split is by photograph, so no test scene is ever seen in training). Each test item carries its degradation
# type, which is how the scores are grouped.

# %%
root = pipeline.prepare_data(settings)
print(pipeline.dataset_version(settings, root))
from m2restore.data import build_dataset

train_set = build_dataset(dataset, root, "train", patch_size=None, check="none")  # a preview: skip header checks
picks = {}
for i, t in enumerate(train_set.types):
    picks.setdefault(t, i)
show = list(picks.items())[:6]
fig, axes = plt.subplots(1, len(show), figsize=(2.2 * len(show), 2.4), squeeze=False)
for ax, (t, i) in zip(axes[0], show, strict=True):
    ax.imshow(train_set[i]["input"].permute(1, 2, 0).numpy())
    ax.set_title(t, fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 2 · Training with the shared budget
#
# All models minimise the same objective, $\mathcal{L} = \lVert \hat{x} - x \rVert_1 + \sum_k \lambda_k
# \mathcal{L}_k^{\text{aux}}$ (M2Restore adds its mixture-of-experts load-balancing term, $\lambda = 0.01$), with
# AdamW and a warm-up + cosine schedule, for exactly `budget_steps` optimizer steps of `batch_size × grad_accum`
# random `patch_size` crops. The seed fixes the initialisation and the data order.

# %%
t0 = time.perf_counter()
trained = pipeline.train_model(settings, root)
wall["train"] = time.perf_counter() - t0
steps = [r["step"] for r in trained.history["train"]]
losses = [r["loss"] for r in trained.history["train"]]
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(steps, losses)
ax.set(xlabel="iteration", ylabel="training loss", yscale="log", title=f"{model}: {trained.steps} steps")
plt.show()
print(f"{trained.steps} steps in {wall['train']:.0f} s")

# %% [markdown]
# ## 3 · Cost: parameters, FLOPs, latency
#
# Measured on one `profile_size`² image on the run's device (the CLIP prior of M2Restore is frozen and counted
# apart: it is not trained).

# %%
t0 = time.perf_counter()
prof = pipeline.profile(settings, trained.model)
wall["profile"] = time.perf_counter() - t0
prof

# %% [markdown]
# ## 4 · Evaluation per degradation type
#
# For a restored image $\hat{x}$ and its ground truth $x$, both clamped to $[0, 1]$ and rounded to 8-bit levels,
#
# $$\mathrm{PSNR}(\hat{x}, x) = 10 \log_{10} \frac{1}{\frac{1}{N}\sum_i (\hat{x}_i - x_i)^2}\ \text{dB},$$
#
# measured on the three RGB channels and on the luma $Y = (16 + 65.481 R + 128.553 G + 24.966 B)/255$ of ITU-R
# BT.601 (the "Y" of the AllWeather papers). SSIM uses an $11 \times 11$ Gaussian window ($\sigma = 1.5$). The
# reported **average** is the mean over types of the per-type means,
# $\overline{\mathrm{PSNR}} = \frac{1}{|T|} \sum_{t \in T} \frac{1}{|D_t|} \sum_{j \in D_t} \mathrm{PSNR}_j$.
# The degraded inputs are scored the same way: a model has restored something only where it beats them.

# %%
t0 = time.perf_counter()
evaluation = pipeline.evaluate_model(settings, trained.model, root)
samples_file = pipeline.save_visual_samples(settings, trained.model, root)
wall["eval"] = time.perf_counter() - t0
evaluation["frame"].round(3)

# %%
frame = evaluation["frame"].drop(index="average")
fig, ax = plt.subplots(figsize=(7, 3))
frame[["input_psnr_rgb", "psnr_rgb"]].rename(columns={"input_psnr_rgb": "degraded input", "psnr_rgb": model}).plot.bar(
    ax=ax, color=["0.7", "C0"]
)
ax.axhline(evaluation["metrics"]["average"]["psnr_rgb"], color="C0", lw=1, ls="--", label="average (restored)")
ax.set(ylabel="PSNR RGB (dB)", title=f"{model} on {dataset}: restored vs degraded input")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ### From scratch: PSNR on RGB and on Y
#
# The package computes PSNR through pyiqa, told to use YCbCr (pyiqa's own default, YIQ, differs from the papers' Y
# by about a dB). Here the same numbers in plain torch, on the restored samples, checked against the package.

# %%
from m2restore.eval.metrics import prepare, psnr

with np.load(samples_file) as z:
    out_u8, tgt_u8 = z["output"], z["target"]
pred = torch.from_numpy(out_u8).permute(0, 3, 1, 2).double() / 255  # (N, 3, H, W), already 8-bit levels
gt = torch.from_numpy(tgt_u8).permute(0, 3, 1, 2).double() / 255


def luma(img: torch.Tensor) -> torch.Tensor:
    """BT.601 Y in [0, 1] of (N, 3, H, W) RGB in [0, 1]."""
    w = torch.tensor([65.481, 128.553, 24.966], dtype=img.dtype).view(1, 3, 1, 1)
    return (16.0 + (img * w).sum(1, keepdim=True)) / 255.0  # (N, 1, H, W)


def psnr_scratch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a - b) ** 2).flatten(1).mean(1)  # (N,)
    return 10 * torch.log10(1.0 / mse)


ours_rgb, ours_y = psnr_scratch(pred, gt), psnr_scratch(luma(pred), luma(gt))
pkg_rgb = psnr(prepare(pred.float()), prepare(gt.float()), "rgb").double()
pkg_y = psnr(prepare(pred.float()), prepare(gt.float()), "y").double()
assert torch.allclose(ours_rgb, pkg_rgb, atol=1e-3), (ours_rgb, pkg_rgb)
assert torch.allclose(ours_y, pkg_y, atol=1e-3), (ours_y, pkg_y)
print("RGB:", ours_rgb.numpy().round(2), " Y:", ours_y.numpy().round(2))

# %% [markdown]
# ## 5 · The record
#
# Everything a table needs, and nothing a table must guess: metrics per type (RGB and Y), the protocol, the budget,
# wall time, hardware, the selective-scan backend, the git commit, the seed and the parameter count. The runner adds
# the executed notebook's name and its own timing.

# %%
record = pipeline.write_run_record(settings, root, trained, prof, evaluation, wall, parameters=parameters)
print(Path(settings.out_dir) / "record.json")
{k: getattr(record, k) for k in ("run_id", "params", "scan_backend", "git_commit", "wall_time_s")}
