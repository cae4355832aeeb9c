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
# # 00 · Overview and a quick restore
#
# A photograph taken at night in hazy rain suffers from three degradations at once, and the photographer does not
# say which. **All-in-one image restoration** trains *one* network for many degradations, so that it must work out
# what is wrong with each image before repairing it. This suite implements three such networks behind one registry,
# one trainer, one evaluation protocol and one benchmark runner:
#
# - **PromptIR** (Potlapalli et al., NeurIPS 2023): learned *prompts* in a Restormer decoder encode the degradation;
# - **AdaIR** (Cui et al., ICLR 2025): frequency mining, features split into high and low bands by a predicted mask
#   and modulated;
# - **M2Restore** (Wang et al., IEEE TIP 2025): a frozen CLIP *degradation prior* routes a mixture of experts, and a
#   Mamba-CNN bottleneck mixes global and local context through an edge-aware gate.
#
# What you will learn:
# - the all-in-one problem as an equation, and what the three models add to a shared Restormer backbone;
# - how every model is built by name (`m2restore.build_model`, `m2restore.list_models`) and called the same way;
# - which notebook of the suite teaches which component;
# - a complete quick restore: train `m2restore_tiny` on a mini CDD-11 for a short budget (or load a checkpoint), then
#   restore a degraded photograph it has never seen with tiled inference (`m2restore.infer.tiled_forward`) and
#   measure the gain in PSNR.

# %% tags=["parameters"]
smoke = False
device = "cpu"
seed = 0
out_dir = ""
data_root = ""
checkpoint = ""
prior_checkpoint = ""
prior_minutes = 2.0
budget_steps = 300
photo_px = 256
tile = 128
overlap = 32
kinds = ["haze", "rain", "snow", "low_haze_rain"]

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
from m2restore.notebook import centre_square, resolve_data, resolve_prior, setup

out_dir = setup("00_overview", out_dir, device, seed)  # output folder, device check, torch seed
if smoke:
    budget_steps, photo_px, tile, overlap, kinds = 2, 64, 48, 16, kinds[:1]
sns.set_theme(style="white", context="notebook")
print(f"m2restore {m2restore.__version__}, torch {torch.__version__}, device {device}, out_dir {out_dir}")

# %% [markdown]
# ## 1 · The all-in-one problem
#
# A degraded image is a clean scene $J$ pushed through one of $K$ degradation processes $\mathcal D_k$ with random
# parameters $\theta$ (haze density, rain streaks, darkness...):
#
# $$I = \mathcal D_k(J;\,\theta), \qquad k \in \{1, \dots, K\}\ \text{unknown at test time}.$$
#
# A task-specific network learns one inverse $f_k \approx \mathcal D_k^{-1}$ per degradation and needs to be told $k$.
# An all-in-one network learns a single $f$ over the mixture of all types:
#
# $$\min_f\ \mathbb E_{k}\, \mathbb E_{J,\theta}\ \bigl\lVert f\bigl(\mathcal D_k(J;\theta)\bigr) - J \bigr\rVert_1 .$$
#
# Since different $\mathcal D_k$ call for opposite corrections (haze wants more contrast, low light wants more
# brightness and less noise), $f$ has to recognise the degradation, implicitly or explicitly, and condition on it.
# PromptIR and AdaIR learn that recognition end-to-end; M2Restore asks a frozen CLIP model for a probability vector
# $p \in \Delta^{K}$ over named degradations and uses it to route each pixel to the right experts.
#
# The benchmark data in this suite follow the same model (notebook 01): **CDD-11** has 11 types (low light, haze,
# rain, snow and their mixtures), **AllWeather** three (snow, rain + haze, raindrops).
#
# ## 2 · The model zoo, built by name
#
# Every network is registered under named presets: the official size (checkpoint-compatible with the authors'
# releases) and a `_tiny` version (dim 16, blocks 1/2/2/2) that trains on a laptop CPU.

# %%
zoo = pd.DataFrame(
    [{"preset": n, "family": m2restore.get_preset(n).family, "description": m2restore.get_preset(n).description}
     for n in m2restore.list_models()]
).set_index("preset")
with pd.option_context("display.max_colwidth", 120):
    display(zoo)

# %% [markdown]
# `build_model(name, **overrides)` builds any preset; overrides replace fields of the preset's config dataclass and
# are type-checked. All models share one calling convention: `model(x)` maps a batch $(B, 3, H, W)$ in $[0, 1]$ of
# **any** size to a restored batch of the same size (inputs are padded to a multiple of 8 inside and cropped back);
# `model(x, return_aux=True)` also returns the auxiliary losses the trainer adds (M2Restore's load balance of its
# experts) and free-form extras for analysis.

# %%
x = torch.rand(2, 3, 60, 76)  # (B, 3, H, W): sizes that are not multiples of 8
rows = []
for name in ("promptir_tiny", "adair_tiny", "m2restore_tiny"):
    net = m2restore.build_model(name).eval()
    with torch.no_grad():
        out = net(x, return_aux=True)
    rows.append({"preset": name, "class": type(net).__name__, "trainable params": count_parameters(net),
                 "output": tuple(out.image.shape), "aux losses": list(out.aux_losses),
                 "extras": list(out.extras)})
display(pd.DataFrame(rows).set_index("preset"))
print("M2Restore's CLIP prior on these two random images:", tuple(out.extras["prior_probs"].shape),
      "probabilities over", out.extras["class_names"])
small = m2restore.build_model("m2restore_tiny", num_experts=4, top_k=1, scan="bidirectional")
print(f"m2restore_tiny with 4 experts, top-1 routing and a bidirectional scan: {count_parameters(small):,} params")

# %% [markdown]
# ## 3 · The map of the suite
#
# Each notebook teaches one component by importing the package (nothing is re-implemented except small "from
# scratch" cells that are checked with `allclose` against the package), and each has a `smoke` switch that runs it
# in seconds.
#
# | notebook | what it teaches |
# |---|---|
# | **00** overview | this page: the problem, the zoo, a quick restore |
# | **01** degradations | the physics of CDD-11 and AllWeather synthesis; synthetic vs real degraded photos |
# | **02** state-space models | the selective scan $h_t = e^{\Delta_t A} h_{t-1} + \Delta_t B_t u_t$, naive vs fast |
# | **03** Mamba-CNN block | the dual-stream bottleneck and its edge-aware gate, gate maps on real images |
# | **04** CLIP prior | zero-shot degradation classification, confusion matrix, training the tiny prior |
# | **05** CLIP-guided MoE | task prompts, routing, expert usage per degradation type |
# | **06** full model | module tree, parameters, FLOPs, latency and memory vs PromptIR and AdaIR |
# | **07** training | the trainer and its callbacks, recipes, warm-up + cosine, exact resume |
# | **08** evaluation | PSNR/SSIM per type on RGB and Y, the protocol, visual comparisons |
# | **09** benchmark run | one papermill-parameterised model × dataset × seed run and its JSON record |
# | **10** report | tables and figures built from all runs' records |
# | **11** ablations | every switch of `M2RestoreConfig` under one identical budget |
#
# ## 4 · A quick restore
#
# ### 4.1 Data and the CLIP prior
#
# Training data is a **mini CDD-11**: crops of scikit-image's bundled photographs, each degraded 11 ways, in the
# official folder layout (built offline in seconds; `data_root` points at a real CDD-11 instead). The split is by
# photograph: the test photographs (*chelsea* the cat and *rocket*) are never seen in training.
#
# M2Restore's prior is a small CLIP trained to name degradations (notebook 04). We use, in order: the
# `prior_checkpoint` parameter, the prior `make demo` leaves in `data/clip-prior-tiny`, or a new one trained here
# for `prior_minutes` (smoke mode keeps the untrained prior: the code path is the same, the routing is meaningless).

# %%
root = resolve_data(data_root, out_dir, smoke)  # data_root, else `make demo`'s, else built here
prior_path = resolve_prior(prior_checkpoint, root, out_dir, smoke, prior_minutes)  # None: untrained (smoke)
prior_overrides = {"prior_checkpoint": str(prior_path)} if prior_path is not None else {}
print(f"data: {root}\nprior: {prior_path or 'untrained tiny CLIP (smoke mode)'}")

# %% [markdown]
# ### 4.2 Train `m2restore_tiny` (or load a checkpoint)
#
# `m2restore.train.train` is the Python face of `m2restore train`; here with the bundled `cpu-tiny` recipe
# (AdamW, $5\cdot10^{-4}$, 20 warm-up steps then cosine, batch 4 of $64^2$ crops) for `budget_steps` steps. The run
# folder is reused (`resume="auto"`): running the notebook again with the same budget does not retrain. Notebook 07
# explains the trainer; `checkpoint` skips training and loads any m2restore checkpoint instead.

# %%
from m2restore.train import load_model, train
from m2restore.train.cli import recipe_path

if checkpoint:
    model, info = load_model(checkpoint, device=device)
    print(f"loaded {info['model']} ({info['weights']} weights, step {info['step']}) from {checkpoint}")
else:
    t0 = time.perf_counter()
    run = train(
        config_file=recipe_path("cpu-tiny"), model="m2restore_tiny", model_overrides=prior_overrides, seed=seed,
        out_dir=str(out_dir / f"m2restore_tiny-{budget_steps}steps-seed{seed}"), resume="auto",
        data={"dataset": "mini-cdd11", "root": str(root), **({"patch_size": 32, "batch_size": 2} if smoke else {})},
        train={"max_steps": budget_steps, "tensorboard": False, "progress": False,
               **({"warmup_steps": 0, "val_interval": 0} if smoke else {})},
    )
    model = run.model.to(device).eval()
    print(f"trained {run.steps} steps in {time.perf_counter() - t0:.0f} s; validation PSNR {run.val_psnr:.2f} dB "
          f"(mean over types of 64-px test crops); checkpoint {run.last_checkpoint}")

# %% [markdown]
# ### 4.3 Restore a photograph, tile by tile
#
# A large photograph does not have to fit the accelerator: `tiled_forward` cuts it into overlapping tiles of
# `tile` pixels, restores one tile at a time and blends them back on the CPU with linear ramps over the `overlap`
# (the weights of a pixel covered by several tiles sum to one). We degrade *chelsea*, a test photograph, with a few
# CDD-11 types and restore each. PSNR, in dB on 8-bit RGB, is $10 \log_{10} \bigl(1 / \mathrm{MSE}\bigr)$ against the
# clean photograph (notebook 08 details the protocol).

# %%
from skimage import data as skdata

from m2restore.data.degrade import degrade
from m2restore.eval.metrics import MetricSet
from m2restore.infer import tiled_forward


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()  # (1, 3, H, W)


clean = centre_square(skdata.chelsea() / 255.0, photo_px)
metrics = MetricSet(["psnr", "ssim"], spaces=("rgb",))
results, t0 = [], time.perf_counter()
for kind in kinds:
    degraded = degrade(clean, kind, seed, scale=photo_px / 256)
    restored = tiled_forward(model, to_tensor(degraded), tile=tile, overlap=overlap, device=device)  # (1, 3, H, W)
    before, after = metrics(to_tensor(degraded), to_tensor(clean)), metrics(restored, to_tensor(clean))
    results.append({"type": kind, "degraded": degraded, "restored": restored[0].permute(1, 2, 0).clamp(0, 1).numpy(),
                    "PSNR in": before["psnr_rgb"][0], "PSNR out": after["psnr_rgb"][0],
                    "SSIM in": before["ssim_rgb"][0], "SSIM out": after["ssim_rgb"][0]})
print(f"restored {len(kinds)} images of {photo_px}x{photo_px} px with {tile}-px tiles in "
      f"{time.perf_counter() - t0:.1f} s")
table = pd.DataFrame(results).drop(columns=["degraded", "restored"]).set_index("type")
table["gain (dB)"] = table["PSNR out"] - table["PSNR in"]
print(f"better than the input on {table.index[table['gain (dB)'] > 0].tolist()}, "
      f"worse on {table.index[table['gain (dB)'] <= 0].tolist()}")
table.round(3)

# %%
fig, axes = plt.subplots(len(results), 3, figsize=(9, 3.1 * len(results)), squeeze=False)
for row, r in zip(axes, results):
    for ax, img, title in zip(row, (r["degraded"], r["restored"], clean),
                              (f"{r['type']}: {r['PSNR in']:.2f} dB", f"restored: {r['PSNR out']:.2f} dB", "clean")):
        ax.imshow(np.clip(img, 0, 1))
        ax.set_title(title, fontsize=10)
        ax.axis("off")
fig.suptitle(f"m2restore_tiny after {budget_steps if not checkpoint else 'a checkpoint of'} steps, "
             f"tiles of {tile} px", y=1.0)
fig.tight_layout()
fig.savefig(out_dir / "quick_restore.png", dpi=80, bbox_inches="tight")

# %% [markdown]
# What to expect from a short run: a few hundred CPU steps on crops of three training photographs teach the network
# the *global* part of each degradation first (lifting a haze veil, brightening a dark image, restoring contrast) and
# the *local* part (rain streaks, snow flakes) much later. Where the input is already close to the clean image, as
# with light rain or snow, a colour bias picked up from so few training photographs can cost more than the removal
# gains, and the output can score below its input. Notebook 08 measures this per type on the whole test set; the
# paper recipes train for about 200 epochs of thousands of images.

# %% [markdown]
# ### 4.4 Tiles vs the whole image
#
# On an image no larger than one tile, `tiled_forward` is exactly one forward pass. On larger images each tile sees
# less context than the whole image would give it, and M2Restore's Mamba scan and CLIP prior see only their tile;
# the ramps hide the seams. How far is the tiled result from a single whole-image pass?

# %%
whole = tiled_forward(model, to_tensor(results[0]["degraded"]), tile=None, device=device)  # (1, 3, H, W)
tiled = to_tensor(results[0]["restored"])
gap = (whole.clamp(0, 1) - tiled).abs()
single = tiled_forward(model, to_tensor(results[0]["degraded"])[..., :tile, :tile], tile=tile, device=device)
with torch.no_grad():
    direct = model(to_tensor(results[0]["degraded"])[..., :tile, :tile].to(device)).cpu()
print(f"whole image vs {tile}-px tiles: mean |diff| {gap.mean():.4f}, max {gap.max():.3f}; "
      f"PSNR whole {metrics(whole, to_tensor(clean))['psnr_rgb'][0]:.2f} dB vs tiled {results[0]['PSNR out']:.2f} dB")
assert torch.allclose(single, direct, atol=1e-6), "one tile must equal one forward pass"

# %% [markdown]
# ## 5 · Where next
#
# - The same from the command line: `m2restore train --config cpu-tiny --model m2restore_tiny --dataset mini-cdd11
#   --data-root DIR --out runs/x`, then `m2restore restore photo.jpg --checkpoint runs/x/checkpoints/last.pt
#   --out restored/ --tile 256`.
# - A fair comparison of the three models with one identical budget: `make demo` (notebooks 09 and 10).
# - A few hundred CPU steps only start the learning curve; the paper recipes (notebook 07, `device="cuda"`) train
#   for about 200 epochs of the real datasets.
