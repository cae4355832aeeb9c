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
# # 05 · The CLIP-guided mixture of experts
#
# Before each of its three encoder levels M2Restore routes every pixel through a **mixture of experts** (MoE): a
# router picks, per pixel, the top-$k$ of $E$ small MLPs, looking at the pixel's features, a per-image *task
# prompt* and a bias from the frozen CLIP degradation prior. The paper calls the layer DDER (degradation-aware
# dynamic expert routing); the release names it `mcdb1..3`. `m2restore.models.moe` implements it.
#
# What you will learn:
# - the task prompt generator: a per-image convex combination of learned atoms (from scratch, checked);
# - the router: logits from features and prompt, plus the CLIP prior's bias — the release's
#   `gate_boost · Linear(p)` against our confidence-weighted log-prior ("cross-modal calibration");
# - noisy top-$k$ gating and its smooth load estimate, and the $\mathrm{cv}^2$ load-balancing loss (from scratch);
# - the two ways to combine the $k$ expert outputs, log-sum-exp (release) and linear;
# - routing statistics on a mini CDD-11: per-expert load and expert usage per degradation type, for an untrained
#   `m2restore_tiny` and after a short training through `m2restore.train.train`.

# %% tags=["parameters"]
smoke = False
device = "cpu"
seed = 0
out_dir = ""
data_root = ""
prior_checkpoint = ""
size = 64
n_train = 12
n_test = 4
train_steps = 40
batch_size = 4
lr = 1e-3

# %%
import math
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from torch import nn

from m2restore import build_model
from m2restore.data import list_images, make_mini_cdd11, read_image
from m2restore.data.degrade import CDD11_TYPES
from m2restore.models.moe import CLIPGuidedMoE, TaskPromptGenerator, cv_squared
from m2restore.notebook import setup
from m2restore.train import train

out_dir = setup("05_moe", out_dir, device, seed)  # output folder, device check, torch seed
if smoke:
    size, n_train, n_test, train_steps, batch_size = 48, 2, 1, 3, 2
overrides = {"prior_checkpoint": prior_checkpoint} if prior_checkpoint else {}

sns.set_theme(style="white", context="notebook")
print(f"device {device}; mini CDD-11 {size}px, {n_train} train / {n_test} test crops per type; "
      f"{train_steps} training steps; prior: {prior_checkpoint or 'tiny CLIP with random weights'}; out_dir {out_dir}")

# %% [markdown]
# ## 1 · The layer
#
# Each pixel of the feature map $x \in \mathbb R^{C\times H\times W}$ is a token $x_i \in \mathbb R^C$. With a
# per-image prompt $P \in \mathbb R^{P_d}$ and the prior's class probabilities $p \in \Delta^{K-1}$:
#
# $$r_i = [x_i,\ \mathrm{fc}(P)], \qquad \ell_i = r_i W_g + b(p), \qquad
#   \mathcal T_i = \operatorname{top-}k(\ell_i + \epsilon_i), \qquad
#   g_{i,e} = \operatorname{softmax}_{e \in \mathcal T_i}(\ell_{i,e} + \epsilon_{i,e}),$$
#
# $$\text{DDER}(x)_i = x_i + \bigoplus_{e \in \mathcal T_i} g_{i,e}\, \mathrm{MLP}_e(x_i),$$
#
# with $\epsilon$ Gaussian noise in training only and $\bigoplus$ the combine rule (section 5). Only $k$ of $E$ experts
# run per token. The tiny preset has three such layers ($C$ = 16, 32, 64; $E = 6$, $k = 2$):

# %%
model = build_model("m2restore_tiny", **overrides).to(device)
print(model.mcdb1)
layers = {name: getattr(model, name) for name in ("mcdb1", "mcdb2", "mcdb3")}
pd.DataFrame([{"layer": n, "C": l.model.dim, "experts E": l.model.num_experts, "top k": l.model.k,
               "router params": l.model.w_g.numel() + l.model.w_n.numel(),
               "prior params": sum(p.numel() for k, p in l.model.named_parameters() if not k.startswith(("w_", "el."))),
               "expert params (all E)": sum(p.numel() for p in l.model.el.parameters())}
              for n, l in layers.items()]).set_index("layer")

# %% [markdown]
# ## 2 · The task prompt: atoms weighted per image
#
# A small conv net reads the whole input image $I$ (two $3\times3$ stride-3 convs, three $1\times1$, LeakyReLU), is
# averaged over space, and gives softmax weights over $M$ learned atoms $\mathcal D \in \mathbb R^{M\times P_d}$:
#
# $$w = \operatorname{softmax}\bigl(W_o\, \overline{\mathrm{CondNet}(I)}\bigr) \in \Delta^{M-1}, \qquad
#   P = \mathrm{GELU}(w^\top \mathcal D).$$
#
# The prompt is the same for every pixel of an image: it tells the router *which task* the image poses, from the
# image itself (the CLIP prior says it too, from another model). From scratch, with `F.conv2d`:

# %%
def prompt_from_scratch(tp: TaskPromptGenerator, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt (B, P_d), atom weights (B, M)) of images ``x`` (B, 3, H, W) from ``tp``'s parameters."""
    convs = [m for m in tp.CondNet if isinstance(m, nn.Conv2d)]
    h = x
    for i, conv in enumerate(convs):
        h = F.conv2d(h, conv.weight, conv.bias, stride=conv.stride)  # (B, hidden, h', w')
        h = F.leaky_relu(h, 0.1) if i < len(convs) - 1 else h
    w = F.softmax(h.mean((-2, -1)) @ tp.lastOut.weight.t() + tp.lastOut.bias, dim=-1)  # (B, M)
    return F.gelu(w @ tp.dictionary), w  # (B, P_d)


x_demo = torch.rand(3, 3, size, size, device=device)
with torch.no_grad():
    ours, _ = prompt_from_scratch(model.task_prompt, x_demo)
    assert torch.allclose(ours, model.task_prompt(x_demo), atol=1e-6)
print(f"task prompt from scratch == TaskPromptGenerator: prompt {tuple(ours.shape)}, "
      f"{model.task_prompt.dictionary.shape[0]} atoms of width {model.task_prompt.dictionary.shape[1]}")

# %% [markdown]
# ## 3 · The router and the CLIP prior: two calibrations
#
# The prior's probabilities $p$ enter as an additive bias $b(p)$ on the logits. The **release** learns a linear map,
# scaled by a learnable `gate_boost` $\beta$ (initialised to 0.5):
#
# $$b_{\text{release}}(p) = \beta\,(W_p\, p + c).$$
#
# Its bias is not zero when CLIP knows nothing (uniform $p$ still gives $\beta(W_p \tfrac1K\mathbf 1 + c)$), and its
# scale has no meaning. **Ours** (`calibration="bayes"`, the `m2restore` default) turns $p$ into a distribution over
# experts through a learned class-to-expert assignment $A \in \mathbb R^{K\times E}$, and adds its log, weighted by
# how sure CLIP is:
#
# $$\pi(p) = p^\top \operatorname{softmax}_{\text{rows}}(A) \in \Delta^{E-1}, \qquad
#   \kappa(p) = 1 - \frac{H(p)}{\log K} \in [0, 1], \qquad
#   b_{\text{bayes}}(p) = \operatorname{softplus}(s)\,\kappa(p)\,\log \pi(p).$$
#
# Adding $\log\pi$ to the logits multiplies the router's softmax by $\pi$: a product of experts between the router
# and the prior, with a temperature $1/(\operatorname{softplus}(s)\,\kappa)$; a uniform $p$ (entropy $\log K$) gives
# $\kappa = 0$, no bias at all. The prompt is also FiLM-modulated by $p$ (zero-initialised, so it starts as the
# identity). Below, $p$ slides from uniform to one-hot on class 0 for both layers, with $A$ set to send class $j$
# to expert $j \bmod E$, and the bias is checked against a from-scratch formula:

# %%
K, E, C = 11, 6, 16
release = CLIPGuidedMoE(C, C, num_experts=E, num_classes=K, calibration="release")
bayes = CLIPGuidedMoE(C, C, num_experts=E, num_classes=K, calibration="bayes")
with torch.no_grad():
    bayes.prior_assign.copy_(3.0 * F.one_hot(torch.arange(K) % E, E).float())  # class j -> expert j mod E


def bayes_bias_from_scratch(moe: CLIPGuidedMoE, p: torch.Tensor) -> torch.Tensor:
    pi = p @ moe.prior_assign.softmax(-1)  # (B, E)
    kappa = 1 + (p * p.clamp_min(1e-12).log()).sum(-1, keepdim=True) / math.log(moe.num_classes)  # (B, 1)
    return F.softplus(moe.prior_strength) * kappa.clamp(0, 1) * pi.log()


t = torch.linspace(0, 1, 21)[:, None]
p = (1 - t) / K + t * F.one_hot(torch.tensor(0), K).float()  # (21, K) uniform -> one-hot on class 0
with torch.no_grad():
    b_rel, b_bay = release.prior_bias(p), bayes.prior_bias(p)  # (21, E)
    assert torch.allclose(b_bay, bayes_bias_from_scratch(bayes, p), atol=1e-5)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
for ax, b, title in ((axes[0], b_rel, "release: gate_boost · Linear(p)"), (axes[1], b_bay, "ours: κ(p) · log π(p)")):
    for e in range(E):
        ax.plot(t.flatten(), b[:, e], label=f"expert {e}")
    ax.set(xlabel="t  (p = (1-t) uniform + t one-hot(class 0))", title=title)
axes[0].set_ylabel("router bias b(p)")
axes[1].legend(fontsize=8, ncol=2)
fig.tight_layout()
print(f"bias at uniform p: release {b_rel[0].abs().max():.3f} (max |b|), ours {b_bay[0].abs().max():.3f}")

# %% [markdown]
# At $t = 0$ the release's bias is an arbitrary offset per expert; ours is exactly zero and grows with CLIP's
# confidence, favouring expert 0 (the expert that $A$ assigns to class 0) by lowering the others, by $\log$ of
# their prior share.
#
# ## 4 · Noisy top-$k$ gating, load, and the $\mathrm{cv}^2$ balance loss
#
# In training, Gaussian noise with a learned, per-token scale is added before the top-$k$ (Shazeer et al., 2017):
# $\epsilon_{i,e} \sim \mathcal N\bigl(0,\ (\operatorname{softplus}(r_i W_n)_e + 0.01)^2\bigr)$. It explores, and
# it makes the **load** — the number of tokens an expert receives, a count with no gradient — smooth: the expected
# count is $\sum_i \Phi\bigl((\ell_{i,e} - \theta_{i,e}) / \sigma_{i,e}\bigr)$, with $\theta$ the $k$-th best
# competing noisy logit. The **importance** is the sum of gate values per expert. The balance loss pushes both
# towards uniform through their squared coefficient of variation:
#
# $$\mathrm{cv}^2(v) = \frac{\operatorname{Var}(v)}{\overline{v}^{\,2}}, \qquad
#   \mathcal L_{\text{bal}} = \mathrm{cv}^2(\text{importance}) + \mathrm{cv}^2(\text{load}), \qquad
#   \mathcal L = \mathcal L_1 + 0.01 \sum_{\text{layers}} \mathcal L_{\text{bal}} .$$
#
# First, routing without noise (eval mode) from scratch against `route`:

# %%
tokens = torch.randn(500, 2 * C)  # router inputs [x, fc(P)]
bias = bayes.prior_bias(F.one_hot(torch.tensor([3]), K).float() * 0.9 + 0.1 / K).expand(500, E)  # (N, E)
bayes.eval()
with torch.no_grad():
    routing = bayes.route(tokens, bias)
    logits = tokens @ bayes.w_g + bias  # (N, E)
    top, idx = logits.topk(2, dim=1)  # (N, k)
    gates = top.softmax(dim=1)  # (N, k)
assert torch.equal(idx, routing.indices) and torch.allclose(gates, routing.gates)
assert torch.allclose(torch.zeros(500, E).scatter(1, idx, gates).sum(0), routing.importance, atol=1e-4)
bayes.train()
with torch.no_grad():
    noisy = [bayes.route(tokens, bias) for _ in range(20)]
changed = np.mean([(r.indices.sort(1).values != idx.sort(1).values).any(1).float().mean().item() for r in noisy])
print(f"top-2 from scratch == route(); with training noise, {100 * changed:.1f}% of tokens change their expert "
      f"set per draw (mean of 20 draws)")
print("load (tokens per expert), eval:", routing.load.tolist())
print("smooth load, training (one draw):", [round(v, 1) for v in noisy[0].load.tolist()])

# %% [markdown]
# The expert biased by the prior (class 3 → expert 3) already draws the most tokens. Now $\mathrm{cv}^2$ from scratch,
# on a few load vectors of 600 assignments over 6 experts:

# %%
def cv2_from_scratch(v: torch.Tensor) -> torch.Tensor:
    return v.var() / v.mean() ** 2  # unbiased variance, as torch.var and the release


loads = {"balanced": [100, 100, 100, 100, 100, 100], "mild": [130, 120, 100, 100, 80, 70],
         "two experts": [300, 300, 0, 0, 0, 0], "collapsed": [600, 0, 0, 0, 0, 0]}
rows = []
for name, v in loads.items():
    v = torch.tensor(v, dtype=torch.float32)
    assert torch.allclose(cv2_from_scratch(v), cv_squared(v))
    rows.append({"load": name, "counts": v.int().tolist(), "cv^2": float(cv_squared(v))})
pd.DataFrame(rows).set_index("load").round(3)

# %% [markdown]
# $\mathrm{cv}^2$ is 0 for a perfect balance and $E$ for a total collapse onto one expert (here 6), independent of the
# number of tokens. With the weight 0.01 it is a gentle push: the L1 loss of a restoration network is around 0.05
# to 0.3, so a collapsed layer costs about as much as the reconstruction error.
#
# ## 5 · Combining the $k$ experts: log-sum-exp or linear
#
# The release keeps Shazeer's dispatcher, which combines in the exponential domain,
# $y = \log \sum_{e} g_e\, e^{y_e}$; the alternative is the plain weighted sum $y = \sum_e g_e\, y_e$. By Jensen's
# inequality $\log\sum g\,e^{y} \ge \sum g\,y$, and for very different outputs the log-sum-exp tends to the
# *max*, a soft-max-pooling of the experts rather than an average. From scratch (every expert on every token, then
# pick the chosen ones) against `dispatch`, for both rules:

# %%
x_tok = torch.randn(300, C)  # (N, C)
with torch.no_grad():
    r = bayes.route(torch.cat([x_tok, torch.randn(300, C)], 1))
    dense = torch.stack([expert(x_tok) for expert in bayes.el], dim=1)  # (N, E, C) all experts
    chosen = dense.gather(1, r.indices[..., None].expand(-1, -1, C))  # (N, k, C)
    g = r.gates[..., None]  # (N, k, 1)
    for combine, ours in (("logsumexp", torch.logsumexp(chosen + g.log(), dim=1)), ("linear", (g * chosen).sum(1))):
        bayes.combine = combine
        assert torch.allclose(bayes.dispatch(x_tok, r.indices, r.gates), ours, atol=1e-5), combine
bayes.combine = "logsumexp"
y1 = torch.linspace(-4, 4, 200)
fig, ax = plt.subplots(figsize=(5.5, 3.4))
ax.plot(y1, torch.logsumexp(torch.stack([y1 + math.log(0.5), torch.full_like(y1, math.log(0.5))]), 0),
        label="log-sum-exp")
ax.plot(y1, 0.5 * y1, label="linear")
ax.plot(y1, torch.maximum(y1, torch.zeros_like(y1)), "k:", label="max")
ax.set(xlabel="$y_1$ (with $y_2 = 0$, $g_1 = g_2 = 0.5$)", ylabel="combined output", title="two experts combined")
ax.legend()
fig.tight_layout()
print("dispatch == dense from-scratch combine, for logsumexp and linear")

# %% [markdown]
# ## 6 · Routing statistics on a mini CDD-11
#
# Which experts does each degradation type use? A mini CDD-11 (notebook 01's synthesis on crops of the bundled
# photographs) gives labelled test images; each type is passed through the model on its own, and the
# `RoutingStats` that `forward(..., return_aux=True)` returns per layer are added up. (`RoutingStats.class_counts`
# splits by the *prior's* predicted class; here we split by the true type.) Specialisation is measured by the mutual
# information between type $T$ and chosen expert $X$, $I(T; X) = \sum p(t, x) \log_2 \frac{p(t, x)}{p(t)\,p(x)}$, at
# most $\log_2 E = 2.58$ bits (each type its own experts), 0 when every type routes alike.

# %%
root = Path(data_root) if data_root else make_mini_cdd11(out_dir / f"mini_cdd11_{size}px", size=size, seed=seed,
                                                        n_train=n_train, n_test=n_test, overwrite=True)
test_images = {kind: torch.stack([torch.from_numpy(read_image(f)).permute(2, 0, 1)
                                  for f in list_images(root / "test" / kind)[:n_test]]) for kind in CDD11_TYPES}
print(f"mini CDD-11 at {root}: {sum(len(v) for v in test_images.values())} test images, "
      f"{len(list_images(root / 'train' / 'low'))} train crops per type")


@torch.no_grad()
def routing_by_type(net: nn.Module) -> dict[str, np.ndarray]:
    """Per layer, a (types, E) array of token-to-expert assignment counts on the test images of each type."""
    net.eval()
    counts = {name: [] for name in layers}
    for imgs in test_images.values():
        res = net(imgs.to(device), return_aux=True)
        for name in layers:
            counts[name].append(res.extras["routing"][name].counts.cpu().numpy())
    return {name: np.stack(c) for name, c in counts.items()}


def mutual_information(counts: np.ndarray) -> float:
    """I(type; expert) in bits from a (types, E) count table."""
    joint = counts / counts.sum()
    outer = joint.sum(1, keepdims=True) @ joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log2(joint[nz] / outer[nz])).sum())


def summary(usage: dict[str, np.ndarray], label: str) -> list[dict]:
    return [{"model": label, "layer": name, "cv^2 of load": float(cv_squared(torch.tensor(c.sum(0)))),
             "I(type; expert) bits": mutual_information(c), "busiest expert share": float(c.sum(0).max() / c.sum())}
            for name, c in usage.items()]


with torch.no_grad():
    probs = model.run_prior(torch.cat(list(test_images.values())).to(device)).probs  # (n, K)
kappa = 1 + (probs * probs.clamp_min(1e-12).log()).sum(-1) / math.log(probs.shape[-1])  # (n,) confidence
print(f"prior: {probs.shape[-1]} classes; on the test images its top probability averages "
      f"{probs.max(-1).values.mean():.3f} (uniform: {1 / probs.shape[-1]:.3f}), confidence κ {kappa.mean():.4f}")
usage_before = routing_by_type(model)
pd.DataFrame(summary(usage_before, "untrained")).set_index(["model", "layer"]).round(3)

# %% [markdown]
# ### A short training run
#
# `m2restore.train.train` trains the same model object (L1 + the balance term, AdamW, cosine schedule) on the mini
# CDD-11's training split for `train_steps` steps. It is short — a few dozen steps on a CPU — so read what follows
# as the first moves of the router, not as a trained MoE.

# %%
run_dir = out_dir / "run"
shutil.rmtree(run_dir, ignore_errors=True)  # this notebook's own run folder: start afresh on every execution
result = train(
    model=model, out_dir=str(run_dir), seed=seed,
    data={"dataset": "mini-cdd11", "root": str(root), "patch_size": size, "batch_size": batch_size, "val_split": ""},
    train={"max_steps": train_steps, "lr": lr, "log_interval": 1, "val_interval": 0, "save_interval": 0,
           "tensorboard": False, "progress": False},
)
model = result.model
hist = pd.DataFrame(result.history["train"])
print(f"{result.steps} steps in {result.wall_time_s:.0f} s; L1 {hist.l1.iloc[0]:.4f} -> {hist.l1.iloc[-1]:.4f}, "
      f"balance term {hist['aux/balance'].iloc[0]:.4f} -> {hist['aux/balance'].iloc[-1]:.4f}")
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].plot(hist.step, hist.l1)
axes[0].set(xlabel="step", ylabel="L1", title="reconstruction loss")
axes[1].plot(hist.step, hist["aux/balance"])
axes[1].set(xlabel="step", ylabel="0.01 Σ cv²", title="balance term (3 layers)")
fig.tight_layout()

# %%
usage_after = routing_by_type(model)
stats = pd.DataFrame(summary(usage_before, "untrained") + summary(usage_after, f"after {result.steps} steps"))
stats.to_csv(out_dir / "routing_stats.csv", index=False)
stats.set_index(["model", "layer"]).round(3)

# %%
fig, axes = plt.subplots(2, 3, figsize=(15, 9.5))
for row, (usage, label) in zip(axes, ((usage_before, "untrained"), (usage_after, f"after {result.steps} steps"))):
    for ax, (name, c) in zip(row, usage.items()):
        share = c / c.sum(1, keepdims=True)  # (types, E) fraction of each type's assignments
        sns.heatmap(share, ax=ax, vmin=0, vmax=0.6, cmap="viridis", annot=not smoke, fmt=".2f", annot_kws={"size": 7},
                    cbar=ax is row[-1], yticklabels=list(test_images), xticklabels=range(c.shape[1]))
        ax.set(title=f"{label}: {name}, I = {mutual_information(c):.3f} bits", xlabel="expert")
fig.suptitle("expert usage per degradation type (share of each type's token assignments)", y=1.0)
fig.tight_layout()
fig.savefig(out_dir / "expert_usage.png", dpi=70, bbox_inches="tight")

# %%
load = pd.DataFrame([{"model": label, "layer": name, "expert": e, "share": v / c.sum()}
                     for usage, label in ((usage_before, "untrained"), (usage_after, "trained"))
                     for name, c in usage.items() for e, v in enumerate(c.sum(0))])
grid = sns.catplot(load, x="expert", y="share", hue="model", col="layer", kind="bar", height=3, aspect=1.2)
for ax in grid.axes.flat:
    ax.axhline(1 / E, color="k", ls=":", lw=1)
grid.figure.suptitle("per-expert load on the mini CDD-11 test set (dotted: uniform)", y=1.05);

# %% [markdown]
# What to look for, with the numbers printed above:
#
# - **Load**: $\mathrm{cv}^2$ of the load per layer says how far from uniform the routing is (0 = uniform; with
#   $k = 2$ of 6, every token on the same two experts gives 2.0 and a busiest-expert share of 0.5). An untrained
#   layer can start there: its logits differ more between experts than between tokens (all pixel features of an
#   image share a common component, the conv bias and the mean colour), so nearly every token picks the same two
#   experts. That is what the balance term, large at step 0, pushes against.
# - **Specialisation**: rows of the heatmaps that differ mean that degradation types use different experts; $I(T; X)$
#   sums that up. An untrained router already routes by pixel features, so low-light images (dark pixels) tend to
#   differ from the rest before any training. Whether a few dozen steps sharpen or blur that depends on the run:
#   compare the two rows of the table. In our full-mode run (seed 0, 40 steps, bundled photographs) the load
#   spread out ($\mathrm{cv}^2$ 2.39 / 2.17 / 1.22 → 0.97 / 0.88 / 1.06 for `mcdb1..3`) and the first layer's
#   $I(T; X)$ rose from 0.002 to 0.23 bits: the low-light types without haze (`low`, `low_rain`, `low_snow`) moved
#   to experts of their own while every type with haze stayed on the initial pair — the first split the router
#   learns is by brightness and contrast.
# - **The prior**: with the default tiny CLIP prior (random weights) $p$ is close to uniform, so our calibration
#   switches its bias off ($\kappa \approx 0$) and the routing comes from the pixels and the task prompt alone.
#   Pass `prior_checkpoint` (a prior trained in notebook 04 or by `m2restore clip train`) to see the prior steer
#   the routing.
#
# ## Summary
#
# - The DDER layer routes every pixel to the top-$k$ of $E$ MLP experts, from its features, a per-image task prompt
#   (softmax-weighted atoms) and the CLIP prior's bias; all three from-scratch pieces (prompt, top-$k$ routing,
#   calibrated bias), $\mathrm{cv}^2$ and both combine rules match the package.
# - The release's bias $\beta\,\mathrm{Linear}(p)$ is an uncalibrated offset; ours, $\kappa(p)\log\pi(p)$, is a
#   product of experts with the prior that vanishes when CLIP is unsure.
# - Files in `out_dir`: the mini CDD-11, the training run, `routing_stats.csv` and `expert_usage.png`.
