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
# # 08 · Evaluation: per-type PSNR/SSIM on RGB and Y, and what the protocol changes
#
# Restoration papers report PSNR and SSIM, but not always the same PSNR and SSIM: on RGB or on the luma channel Y,
# on 8-bit or float images, with or without a border cropped, averaged over images or over degradation types. The
# same outputs can differ by more than a dB between these conventions, more than the gap between two methods.
# `m2restore.eval` computes both colour spaces every time and writes the protocol next to the numbers.
#
# What you will learn:
# - the measuring protocol of `m2restore.eval`, stated in full, and PSNR and BT.601 Y re-implemented from scratch
#   (checked with `allclose` against the package and scikit-image);
# - why PSNR on Y and on RGB differ, derived and measured: a constant offset of +1.32 dB, chroma errors that Y does
#   not see, and noise that averages out;
# - what a border crop does;
# - per-type PSNR/SSIM of a trained model on mini CDD-11, the papers' average (mean of per-type means), and the gain
#   over the degraded input;
# - visual comparisons per degradation type: input, output, target.

# %% tags=["parameters"]
smoke = False
device = "cpu"
seed = 0
out_dir = ""
dataset = "mini-cdd11"
data_root = ""
model = "m2restore_tiny"
checkpoint = ""
budget_steps = 300
prior_checkpoint = ""
prior_minutes = 2.0
crop_border = 0
eval_limit = 0
tile = 0

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import display
from torch import nn

from m2restore.data import build_dataset
from m2restore.eval import evaluate
from m2restore.eval.metrics import MetricSet, prepare, psnr, rgb_to_y, ssim
from m2restore.notebook import resolve_data, resolve_prior, setup

out_dir = setup("08_evaluation", out_dir, device, seed)  # output folder, device check, torch seed
if smoke:
    budget_steps = 2
sns.set_theme(style="whitegrid", context="notebook")
print(f"model {checkpoint or model}, dataset {dataset}, device {device}, out_dir {out_dir}")

# %% [markdown]
# ## 1 · The protocol
#
# For a restored image $\hat x$ and its reference $x$, both RGB in $[0, 1]$ with $H \times W$ pixels:
#
# 1. **clamp** to $[0, 1]$ and **quantise** to 8-bit levels, $\lfloor 255 v + \tfrac12 \rfloor / 255$ (what a saved
#    PNG holds; the papers measure their saved outputs);
# 2. **crop** `crop_border` pixels from every side (BasicSR's `crop_border`; 0 by default, as the all-in-one papers);
# 3. **PSNR** with data range 1 over all measured values:
#    $\;\mathrm{PSNR} = 10 \log_{10} \dfrac{1}{\mathrm{MSE}}, \quad \mathrm{MSE} = \dfrac{1}{HWc}\sum (\hat x - x)^2$,
#    with $c = 3$ on RGB and $c = 1$ on Y;
# 4. **Y** is the luma of ITU-R BT.601 YCbCr in its studio range (MATLAB's `rgb2ycbcr`, BasicSR's `bgr2ycbcr`):
#    $\;Y = \bigl(16 + 65.481\,R + 128.553\,G + 24.966\,B\bigr) / 255 \in [16/255,\ 235/255]$
#    (pyiqa's default Y is YIQ's, which differs by about a dB: the package tells pyiqa `color_space='ycbcr'`);
# 5. **SSIM**: MATLAB's `ssim_index`, Gaussian $11 \times 11$ window with $\sigma = 1.5$ on the 0–255 scale, mean of
#    the per-channel maps on RGB (PromptIR's and OneRestore's published SSIM come from scikit-image's default
#    $7 \times 7$ uniform window instead, so SSIM across papers is comparable only roughly);
# 6. the dataset score is the **mean of per-type means**: each degradation type counts once, whatever its number of
#    images (CDD-11 has 200 test images per type; AllWeather's subsets are reported separately).
#
# `MetricSet.protocol()` writes these choices into every results file:

# %%
metric_set = MetricSet(["psnr", "ssim"], crop_border=crop_border)
{k: v for k, v in metric_set.protocol().items() if k not in ("skipped", "lower_better")}

# %% [markdown]
# ### From scratch: PSNR and Y in plain torch
#
# A test pair of mini CDD-11 (data: `data_root`, else `make demo`'s mini CDD-11, else one built here offline),
# measured by a dozen lines of torch, by the package (pyiqa inside) and by scikit-image.

# %%
root = resolve_data(data_root, out_dir, smoke, dataset)  # data_root, else `make demo`'s, else built here
test_set = build_dataset(dataset, root, "test", patch_size=None)
pair = test_set[len(test_set) // 2]
x_in, x_ref = pair["input"][None], pair["target"][None]  # (1, 3, H, W) degraded input and clean reference


def quantise(img: torch.Tensor) -> torch.Tensor:
    return torch.floor(img.clamp(0, 1) * 255 + 0.5) / 255  # (B, C, H, W) on 8-bit levels


def y_from_scratch(img: torch.Tensor) -> torch.Tensor:
    r, g, b = img.unbind(1)  # (B, H, W) each
    return ((16 + 65.481 * r + 128.553 * g + 24.966 * b) / 255)[:, None]  # (B, 1, H, W)


def psnr_from_scratch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a.double() - b.double()) ** 2).flatten(1).mean(1)  # (B,)
    return 10 * torch.log10(1 / mse)


a, b = quantise(x_in), quantise(x_ref)
ours = {"rgb": psnr_from_scratch(a, b), "y": psnr_from_scratch(y_from_scratch(a), y_from_scratch(b))}
package = {s: psnr(prepare(x_in), prepare(x_ref), s) for s in ("rgb", "y")}
assert torch.allclose(y_from_scratch(a), rgb_to_y(a), atol=1e-6), "BT.601 Y differs from m2restore.eval.rgb_to_y"
for s in ("rgb", "y"):
    assert torch.allclose(ours[s].float(), package[s], atol=1e-4), f"PSNR {s} differs from m2restore.eval.psnr"

from skimage.metrics import peak_signal_noise_ratio, structural_similarity

np_a, np_b = a[0].permute(1, 2, 0).numpy(), b[0].permute(1, 2, 0).numpy()
sk_psnr = peak_signal_noise_ratio(np_b, np_a, data_range=1.0)
sk_ssim = structural_similarity(np_b * 255, np_a * 255, data_range=255, channel_axis=2, gaussian_weights=True,
                                sigma=1.5, use_sample_covariance=False)
pkg_ssim = ssim(prepare(x_in), prepare(x_ref), "rgb").item()
assert abs(sk_psnr - package["rgb"].item()) < 1e-3
print(f"{pair['name']}: PSNR RGB {ours['rgb'].item():.4f} (ours) {package['rgb'].item():.4f} (package) "
      f"{sk_psnr:.4f} (skimage); PSNR Y {ours['y'].item():.4f} (ours) {package['y'].item():.4f} (package)")
print(f"SSIM RGB {pkg_ssim:.4f} (package) vs {sk_ssim:.4f} (skimage, Gaussian 11x11, sigma 1.5; it pads borders "
      "where MATLAB keeps only valid windows)")

# %% [markdown]
# ## 2 · Why RGB and Y differ
#
# Write the error per pixel as $e = \hat x - x = (e_R, e_G, e_B)$. Y is a weighted sum with weights
# $w = (65.481, 128.553, 24.966)/255 = (0.257, 0.504, 0.098)$, so the Y error is $e_Y = w^\top e$ (the offset 16
# cancels). Three cases:
#
# - **grey error** $e_R = e_G = e_B = \varepsilon$ (a brightness offset): $e_Y = (\sum w)\,\varepsilon = 0.859\,
#   \varepsilon$, hence $\mathrm{PSNR}_Y - \mathrm{PSNR}_{RGB} = -20 \log_{10} 0.859 = +1.32$ dB. Studio-range Y spans
#   only 219 of 255 levels, so every error shrinks.
# - **chroma error** with $w^\top e = 0$ (a colour cast that keeps the luma): $\mathrm{PSNR}_Y = \infty$ (in floats:
#   the rounding error, about 150 dB); Y is blind to it while RGB pays in full.
# - **independent noise** of variance $\sigma^2$ per channel: $\operatorname{var}(e_Y) = \lVert w \rVert^2 \sigma^2 =
#   0.332\,\sigma^2$, so $\mathrm{PSNR}_Y - \mathrm{PSNR}_{RGB} = -10 \log_{10} 0.332 = +4.79$ dB.
#
# Real restoration errors mix the three, so $\mathrm{PSNR}_Y$ is usually 1–3 dB above $\mathrm{PSNR}_{RGB}$, and more
# where the method gets the brightness right but the colours wrong. Measured on the reference image (without 8-bit
# rounding, so that the small errors are exact):

# %%
w = torch.tensor([65.481, 128.553, 24.966]) / 255
chroma = torch.tensor([w[1], -w[0], 0.0])
chroma = chroma / chroma.abs().max()  # a direction with w . chroma = 0
gen = torch.Generator().manual_seed(seed)
ref = x_ref.clamp(0.1, 0.9)  # keep the perturbed image inside [0, 1] so nothing clips
cases = {
    "grey offset +0.02": ref + 0.02,
    "chroma cast 0.02 (w . e = 0)": ref + 0.02 * chroma.view(1, 3, 1, 1),
    "independent noise sigma 0.02": ref + 0.02 * torch.randn(ref.shape, generator=gen),
}
theory = {"grey offset +0.02": -20 * np.log10(w.sum().item()), "chroma cast 0.02 (w . e = 0)": np.inf,
          "independent noise sigma 0.02": -10 * np.log10((w**2).sum().item())}
rows = []
for label, img in cases.items():
    p_rgb, p_y = psnr_from_scratch(img, ref).item(), psnr_from_scratch(rgb_to_y(img), rgb_to_y(ref)).item()
    rows.append({"error": label, "PSNR RGB": p_rgb, "PSNR Y": p_y, "Y - RGB measured": p_y - p_rgb,
                 "Y - RGB theory": theory[label]})
spaces = pd.DataFrame(rows).set_index("error")
assert abs(spaces.iloc[0]["Y - RGB measured"] - spaces.iloc[0]["Y - RGB theory"]) < 1e-3
spaces.round(2)

# %% [markdown]
# ## 3 · A trained model, per degradation type
#
# `checkpoint` loads any m2restore checkpoint (e.g. notebook 00's or 07's run, or `make demo`'s under
# `benchmarks/results/demo/runs/...`); without one, `model` is trained here with the `cpu-tiny` recipe for
# `budget_steps` steps (reused when the notebook runs again). M2Restore's CLIP prior: `prior_checkpoint`, else
# `make demo`'s, else one trained here for `prior_minutes` (smoke mode: the untrained prior).

# %%
from m2restore.train import load_model, train
from m2restore.train.cli import recipe_path

if checkpoint:
    net, info = load_model(checkpoint, device=device)
    label = f"{info['model']} (checkpoint, step {info['step']})"
else:
    prior_path = resolve_prior(prior_checkpoint, root, out_dir, smoke, prior_minutes, model=model)
    overrides = {"prior_checkpoint": str(prior_path)} if prior_path is not None else {}
    t0 = time.perf_counter()
    run = train(
        config_file=recipe_path("cpu-tiny"), model=model, model_overrides=overrides, seed=seed, resume="auto",
        out_dir=str(out_dir / f"{model}-{budget_steps}steps-seed{seed}"),
        data={"dataset": dataset, "root": str(root), **({"patch_size": 32, "batch_size": 2} if smoke else {})},
        train={"max_steps": budget_steps, "tensorboard": False, "progress": False,
               **({"warmup_steps": 0, "val_interval": 0} if smoke else {})},
    )
    net = run.model.to(device).eval()
    label = f"{model} ({run.steps} steps)"
    print(f"{label}: {time.perf_counter() - t0:.0f} s")

eval_set = test_set
if eval_limit and len(test_set) > eval_limit:  # spread evenly, so that every type keeps images
    keep = torch.linspace(0, len(test_set) - 1, eval_limit).round().long().unique().tolist()
    eval_set = torch.utils.data.Subset(test_set, keep)
common = {"crop_border": crop_border, "device": device, "tile": tile or None, "progress": False}
restored = evaluate(net, eval_set, out_dir=out_dir / "eval", **common)
degraded = evaluate(nn.Identity(), eval_set, **common)  # the input itself as the "restoration"
print(f"{len(eval_set)} test images; protocol written to {out_dir / 'eval' / 'results.json'}")
print(restored.table())

# %% [markdown]
# The table is per type and then the **average of the per-type means**. Against the degraded input itself (an
# identity "model" evaluated the same way):

# %%
per_type = restored.to_frame().join(degraded.to_frame().add_suffix(" input"))
summary = pd.DataFrame({
    "PSNR RGB in": per_type["psnr_rgb input"], "PSNR RGB out": per_type["psnr_rgb"],
    "PSNR Y in": per_type["psnr_y input"], "PSNR Y out": per_type["psnr_y"],
    "SSIM RGB out": per_type["ssim_rgb"], "SSIM Y out": per_type["ssim_y"],
})
summary["gain RGB (dB)"] = summary["PSNR RGB out"] - summary["PSNR RGB in"]
summary["Y - RGB (dB)"] = summary["PSNR Y out"] - summary["PSNR RGB out"]
display(summary.round(3))
avg = summary.loc["average"]
print(f"average over types: PSNR RGB {avg['PSNR RGB in']:.2f} -> {avg['PSNR RGB out']:.2f} dB "
      f"({avg['gain RGB (dB)']:+.2f}), PSNR Y {avg['PSNR Y in']:.2f} -> {avg['PSNR Y out']:.2f} dB; "
      f"Y is {avg['Y - RGB (dB)']:+.2f} dB above RGB on the outputs")

# %%
bars = (summary.drop(index="average")[["PSNR RGB in", "PSNR RGB out", "PSNR Y in", "PSNR Y out"]]
        .reset_index().melt(id_vars="type", var_name="measure", value_name="PSNR (dB)"))
fig, ax = plt.subplots(figsize=(14, 3.8))
sns.barplot(bars, x="type", y="PSNR (dB)", hue="measure", ax=ax,
            palette=["#a6cee3", "#1f78b4", "#fdbf6f", "#ff7f00"])
ax.axhline(avg["PSNR RGB out"], color="#1f78b4", ls="--", lw=1)
ax.set(xlabel="", title=f"{label}: per-type PSNR, input vs output, RGB vs Y (dashed: RGB average)")
ax.tick_params(axis="x", rotation=30)
ax.legend(ncol=4, fontsize=9)
fig.tight_layout()
fig.savefig(out_dir / "per_type_psnr.png", dpi=80, bbox_inches="tight")

# %% [markdown]
# Which types are hardest, and which gained most from this model:

# %%
by_type = summary.drop(index="average")
print(f"lowest output PSNR: {by_type['PSNR RGB out'].idxmin()} ({by_type['PSNR RGB out'].min():.2f} dB); "
      f"highest: {by_type['PSNR RGB out'].idxmax()} ({by_type['PSNR RGB out'].max():.2f} dB)")
print(f"largest gain: {by_type['gain RGB (dB)'].idxmax()} ({by_type['gain RGB (dB)'].max():+.2f} dB); "
      f"smallest: {by_type['gain RGB (dB)'].idxmin()} ({by_type['gain RGB (dB)'].min():+.2f} dB)")
gap = by_type["Y - RGB (dB)"]
print(f"Y - RGB on the outputs: from {gap.min():+.2f} dB ({gap.idxmin()}) to {gap.max():+.2f} dB ({gap.idxmax()})")

# %% [markdown]
# ## 4 · The border crop
#
# Super-resolution inherited `crop_border` because its borders are unreliable (kernels run off the image).
# All-in-one restoration papers usually measure with 0, but the border still matters: padding to a multiple of 8 and receptive fields that leave
# the image make the outer pixels the hardest to restore, so cropping them usually raises the score a little.

# %%
crops = [0, 4, 8] if not smoke else [0, 4]
rows = []
for c in crops:
    res = evaluate(net, eval_set, crop_border=c, device=device, tile=tile or None, progress=False, metrics=["psnr"])
    rows.append({"crop_border": c, **res.average})
pd.DataFrame(rows).set_index("crop_border").round(3)

# %% [markdown]
# ## 5 · Visual comparisons per degradation type
#
# One test image per type (the first of each), degraded input / restored output / clean target, with the per-image
# RGB PSNR. The restored images are also saved per type by `evaluate(..., save_images=DIR)`.

# %%
first = {}
for i in range(len(eval_set)):
    item = eval_set[i]
    first.setdefault(item["type"], item)
types = list(first)
fig, axes = plt.subplots(3, len(types), figsize=(1.9 * len(types), 6.4), squeeze=False)
with torch.no_grad():
    for j, kind in enumerate(types):
        item = first[kind]
        out = net(item["input"][None].to(device)).cpu()[0]  # (3, H, W)
        p_in = metric_set(item["input"][None], item["target"][None])["psnr_rgb"][0]
        p_out = metric_set(out[None], item["target"][None])["psnr_rgb"][0]
        for i, (img, title) in enumerate([(item["input"], f"{kind}\n{p_in:.1f} dB"), (out, f"{p_out:.1f} dB"),
                                          (item["target"], "target")]):
            axes[i, j].imshow(img.clamp(0, 1).permute(1, 2, 0).numpy())
            axes[i, j].set_title(title, fontsize=8)
            axes[i, j].axis("off")
for i, name in enumerate(("input", "output", "target")):
    axes[i, 0].text(-0.08, 0.5, name, transform=axes[i, 0].transAxes, rotation=90, va="center", ha="right")
fig.suptitle(f"{label}: one test image per degradation type", y=1.0)
fig.tight_layout()
fig.savefig(out_dir / "visual_comparison.png", dpi=80, bbox_inches="tight")
