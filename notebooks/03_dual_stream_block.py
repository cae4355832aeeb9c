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
# # 03 · The dual-stream Mamba-CNN block and the edge-aware gate
#
# M2Restore's bottleneck (the $H/8 \times W/8$ level) is a stack of **MB blocks**. Each mixes its features with two
# streams: a *global* one, a Mamba selective SSM (notebook 02) run over all $H \cdot W$ pixel tokens, and a *local*
# one, a depthwise $3 \times 3$ convolution. A **dynamic gate** decides per pixel how much of each to take. The paper
# calls the block MCDB and the gate DGF, and describes the gate as *edge-aware*: it sees a Sobel edge map of the
# input and degradation features, and its output $G$ weights the local stream.
#
# What you will learn:
# - the block's equations and the three gate types in `m2restore.models.mamba_cnn`: `edge` (paper), `learned`
#   (the release's code) and `fixed` (an ablation);
# - how a 2-D feature map becomes token sequences (raster, bidirectional, four-way scans) and what each order does
#   to the receptive field of the global stream, against the $3 \times 3$ of the local one;
# - the Sobel edge map, from scratch and checked against the package, on real degraded photographs;
# - what the gate maps of the full model look like on real images, and, in a small training experiment, whether an
#   edge gate learns to hand edges and streaks to the local stream.

# %% tags=["parameters"]
smoke = False
device = "cpu"
seed = 0
out_dir = ""
clean_dir = ""
real_pairs_dir = ""
checkpoint = ""
prior = "uniform"
size = 128
toy_steps = 150
toy_crop = 48

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from m2restore import build_model
from m2restore.data import list_images, read_image
from m2restore.data.degrade import degrade
from m2restore.data.mini import clean_photos
from m2restore.models.mamba_cnn import (
    MambaCNNMixer,
    MBBlock,
    edge_map,
    from_sequences,
    num_directions,
    sobel_magnitude,
    to_sequences,
)
from m2restore.notebook import centre_square, setup, shared_data

out_dir = setup("03_dual_stream_block", out_dir, device, seed)  # output folder, device check, torch seed
device = torch.device(device)
if smoke:
    size, toy_steps, toy_crop = 64, 3, 32
toy_batch, toy_pool = (2, 4) if smoke else (8, 48)  # crops per step, training crops in the pool
# the folders given, else shared/data/{clean,real_pairs} beside the checkout (../../shared/data from notebooks/)
clean_dir, real_pairs_dir = shared_data("clean", clean_dir), shared_data("real_pairs", real_pairs_dir)
sns.set_theme(style="white", context="notebook")
print(f"device {device}, image size {size}, toy experiment {toy_steps} steps on {toy_crop}px crops, out_dir {out_dir}")
print(f"clean photos: {clean_dir or 'scikit-image photographs'}; real pairs: {real_pairs_dir or 'not found'}")

# %% [markdown]
# ## 1 · The block
#
# With $\mathrm{LN}$ a per-pixel LayerNorm and GDFN Restormer's gated feed-forward network, an MB block is
#
# $$x \leftarrow x + \mathrm{Mixer}\bigl(\mathrm{LN}(x)\bigr), \qquad
#   x \leftarrow x + \mathrm{GDFN}\bigl(\mathrm{LN}(x)\bigr),$$
#
# and the mixer fuses a global and a local stream of the same normalised features
# $x \in \mathbb R^{C \times H \times W}$:
#
# $$\mathcal G = \mathrm{LN}\Bigl(\mathrm{Mamba}\bigl(\mathrm{LN}(\mathrm{tokens}(x))\bigr)\Bigr), \qquad
#   \mathcal L = \mathrm{GELU}\bigl(\mathrm{DWConv}_{3\times3}(x)\bigr),$$
#
# $$\text{edge (paper):}\quad G = \sigma\Bigl(\mathrm{DWConv}\bigl(\mathrm{GELU}(\mathrm{DWConv}(x + P_e(E) +
#   P_d(d)))\bigr)\Bigr) \in (0,1)^{C\times H\times W}, \qquad
#   \text{out} = G \odot \mathcal L + (1 - G) \odot \mathcal G,$$
#
# where $E$ is the Sobel edge map of the input image pooled to the feature grid (mean and max, two channels) and
# $d$ the degradation embedding of the CLIP prior ($P_e$ a $1\times1$ conv, $P_d$ a linear map). The release's code
# has no edge signal; its gate reads the features and CLIP's *content* embedding:
#
# $$\text{learned (release):}\quad
#   g = \sigma\bigl(W_2\,\mathrm{GELU}(W_1 [x, P(c)])\bigr) \in (0,1)^{1\times H\times W},
#   \qquad \text{out} = g\,\mathcal G + (1 - g)\,\mathcal L,$$
#
# and `fixed` takes $\tfrac12(\mathcal G + \mathcal L)$. Every variant reports the weight of the *local* stream
# ($G$ averaged over channels, $1 - g$, or $\tfrac12$) as its gate map. The cost of each gate at the bottleneck width
# of `m2restore_tiny` (128 channels) and the release's CLIP width (512):

# %%
dim, embed = 128, 512
rows = []
for gate in ("edge", "learned", "fixed"):
    mixer = MambaCNNMixer(dim, embed_dim=embed, gate=gate)
    gate_mods = [m for m in (mixer.edge_gate, mixer.prompt_proj, mixer.gate_net) if m is not None]
    rows.append({"gate": gate, "Mamba stream": sum(p.numel() for p in mixer.mamba.parameters()),
                 "CNN stream": sum(p.numel() for p in mixer.conv_path.parameters()),
                 "gate params": sum(p.numel() for m in gate_mods for p in m.parameters()),
                 "gate output": {"edge": "(B, C, H, W) weight of CNN", "learned": "(B, 1, H, W) weight of Mamba",
                                 "fixed": "0.5"}[gate]})
print(MBBlock(dim, embed_dim=embed, gate="edge"))
pd.DataFrame(rows).set_index("gate")

# %% [markdown]
# The Mamba stream dominates the parameters (notebook 02: in- and out-projections of width $2 \cdot 2C$); the local
# stream is a few thousand; the paper's edge gate is cheap because its convolutions are depthwise (most of it is the
# projection $P_d$ of the 512-wide embedding), the release's spends more on its prompt MLP.
#
# ## 2 · From a feature map to token sequences
#
# Mamba reads a 1-D sequence. `to_sequences` flattens $(B, C, H, W)$ into $D$ sequences of $H W$ tokens:
# `raster` (row-major, the release), `bidirectional` (row-major forwards and backwards) and `four` (also
# column-major both ways, as VMamba's cross-scan). All directions run through one Mamba as a batch, and
# `from_sequences` puts each output back in place and averages. Below, the position of every pixel of a $6\times6$
# map in each sequence:

# %%
h = w = 6
index = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w)  # (1, 1, H, W) pixel id
seqs = to_sequences(index, "four")  # (4, HW, 1): pixel ids in sequence order
fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
for ax, seq, title in zip(axes, seqs, ["raster (row-major)", "row-major, reversed", "column-major",
                                       "column-major, reversed"]):
    position = torch.empty(h * w)
    position[seq[:, 0].long()] = torch.arange(h * w, dtype=torch.float32)  # sequence position of each pixel
    ax.imshow(position.reshape(h, w), cmap="viridis")
    for i in range(h):
        for j in range(w):
            p = int(position[i * w + j])
            ax.text(j, i, p, ha="center", va="center", color="w" if p < 0.6 * h * w else "k", fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
fig.suptitle("token order of each scan direction (numbers: position in the sequence)")
fig.tight_layout()
x = torch.randn(2, 5, 4, 7)  # (B, C, H, W)
for scan in ("raster", "bidirectional", "four"):  # from_sequences inverts to_sequences (it averages D copies)
    seqs = to_sequences(x, scan)  # (D*B, HW, C)
    assert seqs.shape == (num_directions(scan) * 2, 28, 5)
    assert torch.allclose(from_sequences(seqs, scan, 4, 7), rearrange(x, "b c h w -> b (h w) c")), scan
print("from_sequences(to_sequences(x)) == x for raster, bidirectional and four")

# %% [markdown]
# In raster order, horizontal neighbours are 1 token apart but vertical neighbours $W$ tokens apart, and a causal
# scan sees nothing below or to the right of a pixel. The scan order decides the **receptive field** of the global
# stream. To see it, take a mixer with random weights and measure how strongly the output at the centre pixel
# depends on every input pixel, $\sum_c \lvert \partial\, (v \cdot \text{out}_{\cdot, i_0, j_0}) / \partial x_{c, i, j}
# \rvert$ for a random read-out $v$ (log scale), for each scan order and for the local stream:

# %%
def influence(mixer: nn.Module, hw: int = 24, dim: int = 8) -> torch.Tensor:
    """|d <v, out[:, centre]> / d x| summed over channels, (hw, hw), for a fixed random read-out v."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, dim, hw, hw, generator=gen).requires_grad_()  # (1, C, H, W)
    v = torch.randn(dim, generator=gen)  # (C,) not all ones: a LayerNorm'd output sums to a constant over channels
    out, _ = mixer(x)  # (1, C, H, W)
    (out[0, :, hw // 2, hw // 2] * v).sum().backward()
    return x.grad.abs().sum(1)[0]  # (H, W)


torch.manual_seed(seed)
variants = {f"Mamba, {s}": MambaCNNMixer(8, embed_dim=0, gate="fixed", scan=s, use_cnn=False)
            for s in ("raster", "bidirectional", "four")}
variants["CNN stream (3x3 depthwise)"] = MambaCNNMixer(8, embed_dim=0, gate="fixed", use_mamba=False)
fig, axes = plt.subplots(1, 4, figsize=(14, 3.7))
for ax, (name, mixer) in zip(axes, variants.items()):
    infl = influence(mixer)
    im = ax.imshow(torch.log10(infl + 1e-8), cmap="magma", vmin=-6, vmax=float(torch.log10(infl.max())))
    ax.plot(12, 12, "c+", ms=10)
    ax.set_title(f"{name}\n{int((infl > 1e-6 * infl.max()).sum())} of {infl.numel()} pixels reached", fontsize=10)
    ax.axis("off")
fig.colorbar(im, ax=axes, fraction=0.015, label="log10 influence on the centre output")
fig.savefig(out_dir / "receptive_fields.png", dpi=80, bbox_inches="tight")

# %% [markdown]
# - **Raster**: the centre sees only earlier tokens, i.e. the rows above and its own row to the left (Mamba's
#   short conv is causal too), fading with the distance *in the sequence*: the pixel right above is 24 tokens back
#   and counts less than the left neighbour, although both touch the centre.
# - **Bidirectional**: the whole image, still strongest along the row.
# - **Four-way**: the whole image, with the column as strong as the row, a cross-shaped profile.
# - **CNN**: exactly the $3 \times 3$ neighbourhood.
#
# One MB block therefore mixes the whole bottleneck (with bidirectional or four-way scans; a raster scan only half of
# it, the next block's raster scan propagates what the first gathered), while the CNN stream keeps exact, local
# detail. That is the case for gating: local structure (edges, streaks, flakes) from the CNN, context (haze veil,
# global illumination) from the SSM.
#
# ## 3 · The edge signal: Sobel magnitude
#
# The gate's edge map starts from the Sobel gradient magnitude of the input's luminance
# $Y = 0.299R + 0.587G + 0.114B$ (BT.601), with replicated borders:
#
# $$G_x = \begin{pmatrix}-1&0&1\\-2&0&2\\-1&0&1\end{pmatrix} * Y, \qquad G_y = G_x^\top\text{-kernel} * Y, \qquad
#   \lVert\nabla Y\rVert = \sqrt{G_x^2 + G_y^2},$$
#
# then pooled to the bottleneck grid as two channels, the mean (how much structure a feature pixel covers) and the
# max (thin streaks survive). From scratch, with `F.conv2d`, against `sobel_magnitude` and `edge_map`:

# %%
def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float()  # (1, 3, H, W)


def sobel_from_scratch(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) Sobel magnitude of the BT.601 luminance."""
    luma = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
    grey = (image * luma).sum(1, keepdim=True)  # (B, 1, H, W)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([kx, kx.t()])[:, None]  # (2, 1, 3, 3)
    g = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)  # (B, 2, H, W)
    return g.square().sum(1, keepdim=True).sqrt()  # (B, 1, H, W)


photos = clean_photos(str(clean_dir) if clean_dir else None, seed)
demo = centre_square(photos["test"][0][1](), size)
x_demo = to_tensor(demo)
ours, pkg = sobel_from_scratch(x_demo), sobel_magnitude(x_demo)
print(f"Sobel from scratch vs sobel_magnitude: max |diff| = {(ours - pkg).abs().max():.1e}")
assert torch.allclose(ours, pkg, atol=1e-5)
grid = (size // 8, size // 8)
edges_ours = torch.cat([F.avg_pool2d(ours, 8), F.max_pool2d(ours, 8)], dim=1)  # (1, 2, H/8, W/8)
assert torch.allclose(edges_ours, edge_map(x_demo, grid), atol=1e-5)
print(f"edge_map at the bottleneck grid {grid}: [mean, max] pooling over 8x8 windows, equal to the package's")

# %% [markdown]
# ## 4 · Edge maps of real degraded photographs
#
# When `shared/data/real_pairs` is present: one real degraded photograph per kind (Rain100L rain streaks, SOTS
# haze, RainDrop, LOL low light) beside its clean target; otherwise scikit-image photographs with our synthetic
# degradations (notebook 01). Rain streaks and snow *add* edges (each streak is a thin bright line); haze and low
# light *remove* them (contrast is scaled down by the transmission $t$ or the illumination gain $L^{\gamma-1}$), and
# so do raindrops on glass, which are out of focus and blur what lies behind them.

# %%
def real_pairs(root: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, degraded, clean) for the first pair of each category/source under ``root``."""
    out = []
    for category, source in (("rain", "Rain100L"), ("haze", "SOTS-outdoor"), ("raindrop", "RainDrop"),
                             ("lowlight", "LOL")):
        folder = root / category / source
        if not (folder / "input").is_dir():
            continue
        inp = list_images(folder / "input")[0]
        tgt = next(p for p in list_images(folder / "target") if p.stem == inp.stem)
        out.append((f"{category} ({source})", *(centre_square(read_image(f), size) for f in (inp, tgt))))
    return out


pairs = real_pairs(real_pairs_dir) if real_pairs_dir is not None else []
if not pairs:  # synthetic stand-ins on a bundled photograph
    base = centre_square(photos["train"][0][1](), size)
    pairs = [(f"{k} (synthetic)", degrade(base, k, seed, scale=size / 256), base)
             for k in ("rain", "haze", "snow", "low")]
images = torch.cat([to_tensor(d) for _, d, _ in pairs])  # (P, 3, S, S) degraded
targets = torch.cat([to_tensor(c) for _, _, c in pairs])  # (P, 3, S, S) clean
mag_in, mag_gt = sobel_magnitude(images), sobel_magnitude(targets)  # (P, 1, S, S)
fig, axes = plt.subplots(len(pairs), 4, figsize=(11, 2.8 * len(pairs)), squeeze=False)
for row, (label, deg, clean), m_in, m_gt, e, e_gt in zip(axes, pairs, mag_in, mag_gt, edge_map(images, grid),
                                                         edge_map(targets, grid)):
    vmax = float(torch.quantile(m_gt, 0.99))  # the clean image's scales for the input's maps
    for ax, img, top, title in zip(row, (deg, m_in[0], m_gt[0], e[1]), (None, vmax, vmax, float(e_gt[1].max())), (
        label, f"Sobel of input (mean {m_in.mean():.3f})", f"Sobel of clean (mean {m_gt.mean():.3f})",
        f"input's edge map: max over 8x8 ({grid[0]}x{grid[1]})",
    )):
        ax.imshow(img, cmap="gray", vmin=0, vmax=top) if img.ndim == 2 else ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
fig.tight_layout()
fig.savefig(out_dir / "edge_maps.png", dpi=70, bbox_inches="tight")
pd.DataFrame({"pair": [p[0] for p in pairs], "mean Sobel, input": mag_in.mean((1, 2, 3)).numpy(),
              "mean Sobel, clean": mag_gt.mean((1, 2, 3)).numpy()}).set_index("pair").round(4)

# %% [markdown]
# ## 5 · Gate maps of the full model
#
# `M2Restore.forward(x, return_maps=True)` returns, in `extras`, one local-stream weight map per MB block,
# $(B, 1, H/8, W/8)$, and the edge map it fed the gates. With `checkpoint` set (a run of `m2restore train` or of
# notebook 07) the maps are those of a trained model; otherwise `m2restore_tiny` with random weights (its CLIP prior
# set by `prior`; `uniform` carries no information and makes this cell fast), whose maps only show what the gate
# *can* read, not what it learned.

# %%
if checkpoint:
    from m2restore.train import load_model

    model, info = load_model(checkpoint, device=device)
    source = f"{info['model']} from {checkpoint} (step {info['step']})"
else:
    model = build_model("m2restore_tiny", prior=prior).to(device).eval()
    source = f"m2restore_tiny, random weights, prior={prior!r}"
cfg = model.config
print(f"{source}: gate={cfg.gate!r}, scan={cfg.scan!r}, {len(model.latent)} MB blocks")
with torch.no_grad():
    res = model(images.to(device), return_maps=True)
gate_maps = [g.cpu() for g in res.extras["gate_maps"]]  # each (P, 1, S/8, S/8)
edges = res.extras["edge_map"]
edge_mean = (edges if edges is not None else edge_map(images, grid))[:, :1].cpu()  # (P, 1, S/8, S/8)


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two maps (nan if one is constant)."""
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12)) if a.norm() > 0 and b.norm() > 0 else np.nan


fig, axes = plt.subplots(len(pairs), 2 + len(gate_maps), figsize=(2.7 * (2 + len(gate_maps)), 2.7 * len(pairs)),
                         squeeze=False)
dev = max(float((g - 0.5).abs().max()) for g in gate_maps) or 0.5  # colour range 0.5 +- dev: small deviations show
stats = []
for i, row in enumerate(axes):
    row[0].imshow(pairs[i][1])
    row[0].set_title(pairs[i][0], fontsize=9)
    row[1].imshow(edge_mean[i, 0], cmap="gray")
    row[1].set_title("edge map (mean)", fontsize=9)
    for k, (ax, g) in enumerate(zip(row[2:], gate_maps)):
        im = ax.imshow(g[i, 0], cmap="coolwarm", vmin=0.5 - dev, vmax=0.5 + dev)
        r = corr(g[i, 0], edge_mean[i, 0])
        ax.set_title(f"block {k}: local weight\nmean {g[i].mean():.2f}, corr(edges) {r:+.2f}", fontsize=9)
        stats.append({"image": pairs[i][0], "block": k, "mean local weight": float(g[i].mean()),
                      "std": float(g[i].std()), "corr with edges": r})
    for ax in row:
        ax.axis("off")
fig.colorbar(im, ax=axes, fraction=0.02, label=f"weight of the CNN stream (colours span 0.5 ± {dev:.3f})")
fig.savefig(out_dir / "gate_maps_model.png", dpi=70, bbox_inches="tight")
pd.DataFrame(stats).round(3)

# %% [markdown]
# ## 6 · A small experiment: what does each gate learn?
#
# A toy restorer, `conv 3→16 → MB block → conv 16→3` plus the input (a residual), trained to remove synthetic rain
# (`degrade(..., "rain")`) from crops of clean photographs, at full resolution so that the gate map can be compared
# with the streaks pixel by pixel. The same crops, batches and initialisation for three gates: `edge` (edge map at
# full resolution, no CLIP embedding), `learned` (features only) and `fixed`. After training, on held-out crops:
# PSNR, and the correlation of the local-stream weight with the input's edges and with the rain layer
# $\lvert I - J \rvert$.

# %%
class ToyRestorer(nn.Module):
    """conv -> MBBlock(gate) -> conv, residual, at full resolution."""

    def __init__(self, gate: str, dim: int = 16) -> None:
        super().__init__()
        self.gate = gate
        self.head = nn.Conv2d(3, dim, 3, padding=1)
        self.block = MBBlock(dim, embed_dim=0, gate=gate, d_state=8)
        self.tail = nn.Conv2d(dim, 3, 3, padding=1)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        edges = edge_map(img, img.shape[-2:]) if self.gate == "edge" else None  # (B, 2, H, W)
        feats, local_weight = self.block(self.head(img), None, edges)  # (B, C, H, W), (B, 1, H, W)
        return img + self.tail(feats), local_weight


def rain_crops(split: str, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n random (rainy, clean) crops of ``toy_crop`` px from the photographs of ``split``."""
    pics = [load() for _, load in photos[split][:n]]
    rainy, clean = [], []
    for i in range(n):
        pic = pics[i % len(pics)]
        y0, x0 = rng.integers(0, pic.shape[0] - 2 * toy_crop), rng.integers(0, pic.shape[1] - 2 * toy_crop)
        c = centre_square(pic[y0:y0 + 2 * toy_crop, x0:x0 + 2 * toy_crop], toy_crop)  # 2x downscaled crop
        clean.append(to_tensor(c))
        rainy.append(to_tensor(degrade(c, "rain", seed * 10_000 + i, scale=0.5)))
    return torch.cat(rainy), torch.cat(clean)


rng = np.random.default_rng(seed)
train_in, train_gt = rain_crops("train", toy_pool, rng)  # (P, 3, c, c)
test_in, test_gt = rain_crops("test", 4 if smoke else 16, rng)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((10 * torch.log10(1 / F.mse_loss(a.clamp(0, 1), b, reduction="none").mean((1, 2, 3)))).mean())


def mean_corr(maps: torch.Tensor, refs: torch.Tensor) -> float:
    """Mean per-image correlation (nan for a constant gate such as 'fixed')."""
    values = [corr(m, r) for m, r in zip(maps, refs)]
    return float(np.mean(values)) if not np.isnan(values).any() else np.nan


results, toy_maps = [], {}
for gate in ("edge", "learned", "fixed"):
    torch.manual_seed(seed)  # same initialisation of the shared layers and same batches for every gate
    net = ToyRestorer(gate).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    order = torch.randint(0, len(train_in), (toy_steps, toy_batch))
    for step in range(toy_steps):
        out, _ = net(train_in[order[step]].to(device))
        loss = F.l1_loss(out, train_gt[order[step]].to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out, local = net(test_in.to(device))
    out, local = out.cpu(), local.cpu()
    toy_maps[gate] = local
    rain_layer = (test_in - test_gt).abs().mean(1, keepdim=True)  # (n, 1, c, c)
    results.append({
        "gate": gate, "train L1 (last step)": loss.item(), "test PSNR in": psnr(test_in, test_gt),
        "test PSNR out": psnr(out, test_gt), "mean local weight": float(local.mean()),
        "corr(local weight, edges)": mean_corr(local, sobel_magnitude(test_in)),
        "corr(local weight, rain)": mean_corr(local, rain_layer),
    })
toy = pd.DataFrame(results).set_index("gate")
toy.round(3)

# %%
fig, axes = plt.subplots(3, 5, figsize=(14, 8.6))
span = {g: float((toy_maps[g] - toy_maps[g].mean()).abs().max()) for g in ("edge", "learned")}
for r, i in enumerate(range(min(3, len(test_in)))):
    panels = [(test_in[i].permute(1, 2, 0), "rainy input"), (sobel_magnitude(test_in[i:i + 1])[0, 0], "Sobel"),
              ((test_in[i] - test_gt[i]).abs().mean(0), "rain layer |I - J|")]
    panels += [(toy_maps[g][i, 0], g) for g in ("edge", "learned")]
    for ax, (img, title) in zip(axes[r], panels):
        if img.ndim == 3:
            ax.imshow(img.clamp(0, 1))
        elif title in span:
            mid = float(toy_maps[title].mean())
            lo, hi = max(0.0, mid - span[title]), min(1.0, mid + span[title])
            ax.imshow(img, cmap="coolwarm", vmin=lo, vmax=hi)
            title = f"{title} gate: local weight\n{lo:.2f} (blue) to {hi:.2f} (red)"
        else:
            ax.imshow(img, cmap="gray")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
fig.suptitle(f"toy restorer after {toy_steps} steps: where each gate sends pixels to the CNN stream (red)")
fig.tight_layout()
fig.savefig(out_dir / "toy_gate_maps.png", dpi=80, bbox_inches="tight")

# %%
for gate, r in toy.drop(index="fixed").iterrows():
    side = "CNN" if r["corr(local weight, edges)"] > 0 else "Mamba"
    print(f"{gate:8s} gate: edges lean on the {side} stream (corr {r['corr(local weight, edges)']:+.2f}, rain "
          f"{r['corr(local weight, rain)']:+.2f}); PSNR {r['test PSNR in']:.2f} -> {r['test PSNR out']:.2f} dB")
print(f"fixed    gate: PSNR {toy.loc['fixed', 'test PSNR in']:.2f} -> {toy.loc['fixed', 'test PSNR out']:.2f} dB")

# %% [markdown]
# Read the numbers with the training length in mind (`toy_steps`; a few steps in smoke mode mean nothing). Positive
# correlations would mean the gate learned the paper's intuition, streaks and edges to the CNN stream. In our
# full-mode run (seed 0, the Kodak/BSD photographs of `shared/data/clean`, 150 steps) it learned the opposite:
# correlation with the edges $-0.30$ for the edge gate and $-0.44$ for the release's gate, while PSNR rose from
# 20.5 dB to 25.0 (edge), 25.3 (learned) and 24.7 dB (fixed). A gate is only a mixing weight, and nothing in
# this toy forces "edges to the CNN": at full resolution the Mamba stream has its own short causal convolution, and
# the GDFN and the head and tail convolutions do local work too. One seed, one tiny task, one block: notebook 11
# ablates the gate inside the real model.
#
# ## Summary
#
# - An MB block adds a fused mixer and a GDFN to its input; the mixer's global stream is a Mamba over the
#   $H \cdot W$ tokens, its local stream a depthwise $3\times3$ conv, and a gate weights them per pixel.
# - The scan order sets the global receptive field: raster sees only the causal half of the image, bidirectional
#   and four-way scans the whole of it; the CNN sees $3\times3$.
# - The edge gate reads a Sobel map (from scratch equal to the package's) pooled to mean and max; real rain and
#   drops raise the edge energy, haze and low light lower it (table in section 4).
# - Figures in `out_dir`: `receptive_fields.png`, `edge_maps.png`, `gate_maps_model.png`, `toy_gate_maps.png`.
