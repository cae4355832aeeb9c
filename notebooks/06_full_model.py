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
# # 06 · The full model: structure, size and cost
#
# Notebooks 02–05 took M2Restore apart: the selective scan, the dual-stream Mamba-CNN block with its gate, the CLIP
# degradation prior and the CLIP-guided mixture of experts. Here they are assembled into the whole network and
# weighed against the two baselines it builds on, PromptIR and AdaIR.
#
# What you will learn:
# - the module tree of `M2Restore`, and why its frozen CLIP prior sits *outside* it;
# - how many parameters every registered preset has, which are trainable and which frozen, and that the official
#   presets match the authors' releases to the parameter;
# - what separates the `m2restore_official` preset (the released code) from `m2restore` (the paper's design);
# - where the parameters of each model live (encoder, experts, bottleneck, frequency modules, decoder);
# - FLOPs, latency and peak memory of M2Restore vs PromptIR and AdaIR with `m2restore.eval.profile`, and how the
#   cost grows with the image size.

# %% tags=["parameters"]
smoke = False
device = "cpu"
seed = 0
out_dir = ""
compare = ["promptir", "adair", "m2restore_official", "m2restore"]
profile_size = 128
repeats = 3
backward = False
scaling_sizes = [64, 128, 256]

# %%
import dataclasses

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from IPython.display import display
from torch import nn

import m2restore
from m2restore.eval.profile import flop_counter, profile_many
from m2restore.models.base import count_parameters
from m2restore.notebook import setup

out_dir = setup("06_full_model", out_dir, device, seed)  # output folder, device check, torch seed
presets = m2restore.list_models()
if smoke:  # tiny presets only: the full-size ones take seconds each to build and to run on a CPU
    compare = [f"{n}_tiny" for n in compare]
    presets = [n for n in presets if n.endswith("_tiny")]
    profile_size, repeats, scaling_sizes = 64, 1, [32, 64]
main_name = "m2restore_tiny" if smoke else "m2restore"
sns.set_theme(style="whitegrid", context="notebook")
print(f"presets {presets}\ncompare {compare} at {profile_size} px on {device}, {torch.get_num_threads()} threads")

# %% [markdown]
# ## 1 · The module tree
#
# M2Restore is AdaIR's Restormer U-Net with two additions: a routing layer before each encoder level (**DDER**, the
# release's `mcdb1..3`: the CLIP-guided mixture of experts) and a bottleneck of **MB blocks** (Mamba ∥ CNN with a
# dynamic gate) in place of Transformer blocks. With $C$ = `dim` channels at level 1:
#
# $$\underbrace{x \xrightarrow{\text{3×3}} C}_{\texttt{patch\_embed}}
#   \xrightarrow{\texttt{mcdb}_1,\ \texttt{encoder}_1} C \xrightarrow{\downarrow} 2C \xrightarrow{\texttt{mcdb}_2,\
#   \texttt{encoder}_2} 2C \xrightarrow{\downarrow} 4C \xrightarrow{\texttt{mcdb}_3,\ \texttt{encoder}_3} 4C
#   \xrightarrow{\downarrow} \underbrace{8C}_{\texttt{latent: MB}\times n_4} \xrightarrow{\texttt{fre}_1, \uparrow,
#   \dots} 2C \xrightarrow{\texttt{output}} 3 \;+\; x .$$
#
# The tree below lists each child with its class and trainable parameters. The CLIP prior is deliberately not a
# child: it is frozen, rebuilt from its own source, and must never reach the optimizer or the checkpoint.

# %%
def print_tree(module: nn.Module, name: str = "", depth: int = 1, indent: str = "") -> None:
    """Children of ``module`` down to ``depth`` levels: name, class and parameter count (lists collapsed)."""
    children = list(module.named_children())
    for i, (child_name, child) in enumerate(children):
        last = i == len(children) - 1
        branch = "└── " if last else "├── "
        if isinstance(child, (nn.ModuleList, nn.Sequential)) and len(child) and depth <= 1:
            kinds = sorted({type(c).__name__ for c in child})
            label = f"{child_name} [{len(child)} x {'/'.join(kinds)}]"
        else:
            label = f"{child_name} ({type(child).__name__})"
        print(f"{indent}{branch}{label:<52} {count_parameters(child, None):>12,}")
        if depth > 1:
            print_tree(child, child_name, depth - 1, indent + ("    " if last else "│   "))


net = m2restore.build_model(main_name)
print(f"{main_name} ({type(net).__name__}) {count_parameters(net, None):>49,}")
print_tree(net)
prior_params = sum(p.numel() for p in net.prior.parameters())
print(f"\nhidden frozen prior: {type(net.prior).__name__} from '{getattr(net.prior, 'source', '')}', "
      f"{prior_params:,} parameters, K = {net.prior.num_classes} classes, embedding E = {net.prior.embed_dim}, "
      f"input {getattr(net.prior, 'image_size', '?')} px")
prior_storage = {p.data_ptr() for p in net.prior.parameters()}
print("prior tensors in parameters():", any(p.data_ptr() in prior_storage for p in net.parameters()),
      "| in state_dict():", any(v.data_ptr() in prior_storage for v in net.state_dict().values()))

# %% [markdown]
# One level deeper into the two new components: a routing layer (task-prompt projection `fc` and the experts) and
# one MB block (`ssm` is the dual-stream mixer: `mamba`, the local `conv_path` and the `edge_gate`).

# %%
print("mcdb1")
print_tree(net.mcdb1, depth=3)
print("\nlatent[0]")
print_tree(net.latent[0], depth=2)

# %% [markdown]
# ## 2 · Parameters of every preset
#
# *Trainable* parameters are what AdamW updates. *Frozen* ones are layers that exist in a release's checkpoint but
# never receive a gradient there (PromptIR's `chnl_reduce*`/`reduce_noise_channel_*`, AdaIR's unused
# `FreModule.conv`/`score_gen`): we keep them, frozen, so that the official checkpoints load with `strict=True`. The
# CLIP prior is counted separately: it is frozen and outside the module tree. The published totals are
# PromptIR 35,592,263, AdaIR 28,784,824 and the M2Restore release 46,830,041 (without CLIP).

# %%
PUBLISHED = {"promptir": 35_592_263, "adair": 28_784_824, "m2restore_official": 46_830_041}
rows = []
for name in presets:
    model = m2restore.build_model(name)
    prior = getattr(model, "prior", None)
    cfg = model.config
    rows.append({
        "preset": name, "family": m2restore.get_preset(name).family, "dim": cfg.dim,
        "blocks": "/".join(map(str, cfg.num_blocks)), "trainable": count_parameters(model, True),
        "frozen": count_parameters(model, False),
        "CLIP prior (hidden)": sum(p.numel() for p in prior.parameters()) if prior is not None else 0,
    })
    del model
params = pd.DataFrame(rows).set_index("preset")
params["trainable + frozen"] = params["trainable"] + params["frozen"]
for name, total in PUBLISHED.items():
    if name in params.index:
        assert params.loc[name, "trainable + frozen"] == total, f"{name}: {params.loc[name].to_dict()} vs {total:,}"
        print(f"{name}: {total:,} parameters, exactly the official count")
params.style.format("{:,}", subset=["trainable", "frozen", "CLIP prior (hidden)", "trainable + frozen"])

# %% [markdown]
# ## 3 · Release vs paper: `m2restore_official` and `m2restore`
#
# The paper body was not available; the released code and the paper's figure and abstract were. Where they differ,
# `m2restore_official` reproduces the code (and loads its checkpoint) and `m2restore` follows the paper. The
# config fields that differ:

# %%
WHY = {
    "mask_radius_mode": "AdaIR's low-frequency box: 'official' (empty below 1024 px, as released) or 'relative'",
    "unused_layers": "keep the release's never-used FreModule layers (frozen) so its checkpoint loads strictly",
    "calibration": "CLIP bias of the router: additive gate_boost * Linear(p) (release) or our Bayesian product "
                   "of experts, strength * confidence(p) * log(p @ softmax(A))",
    "load_with_prior": "smooth load estimated from the logits that actually route (with the CLIP bias) or not",
    "router_init": "router weights N(0, 1) (release) or scaled to the fan-in",
    "gate": "bottleneck gate: 'learned' 1x1 convs on [x, CLIP embedding] weighting Mamba (release) or the "
            "figure's 'edge' gate, DWConv-GELU-DWConv-Sigmoid on Sobel edges + degradation features",
    "gate_embedding": "the gate reads CLIP's content embedding (release) or its degradation embedding (paper)",
    "prior": "prior source: 'uniform' stand-in (pass daclip:PATH for DA-CLIP) or the tiny CLIP trained here",
    "prior_classes": "prompt bank: the release's 6 words (no low light!) or our 13 classes covering CDD-11",
}
paper, release = m2restore.get_config("m2restore"), m2restore.get_config("m2restore_official")
diff = [
    {"field": f.name, "m2restore_official (release)": getattr(release, f.name),
     "m2restore (paper)": getattr(paper, f.name), "meaning": WHY.get(f.name, "")}
    for f in dataclasses.fields(paper) if getattr(paper, f.name) != getattr(release, f.name)
]
with pd.option_context("display.max_colwidth", 110):
    display(pd.DataFrame(diff).set_index("field"))

# %% [markdown]
# ### Where the parameters live
#
# Grouping each model's parameters by component shows what the additions cost: the experts and the task prompt of
# the routing layers, the Mamba streams of the bottleneck, and AdaIR's frequency modules that M2Restore keeps.
# The paper's edge gate is much lighter than the release's learned gate, whose `prompt_proj` maps the 512-d CLIP
# embedding through $4C$ channels in every one of the eight MB blocks.

# %%
def component(key: str) -> str:
    """Coarse component of a parameter name (shared by PromptIR, AdaIR and M2Restore)."""
    top = key.split(".")[0]
    rules = [("task_prompt", "task prompt"), ("mcdb", "MoE routing (DDER)"), ("latent", "bottleneck"),
             ("fre", "frequency modules (AdaIR)"), ("prompt", "prompt blocks (PromptIR)"),
             ("noise_level", "prompt blocks (PromptIR)"), ("encoder", "encoder"), ("decoder", "decoder"),
             ("refinement", "decoder"), ("reduce", "decoder"), ("chnl_reduce", "prompt blocks (PromptIR)")]
    for prefix, group in rules:
        if top.startswith(prefix):
            return group
    return "embed / up / down / output"


def by_component(model: nn.Module) -> pd.Series:
    counts: dict[str, int] = {}
    for key, p in model.named_parameters():
        counts[component(key)] = counts.get(component(key), 0) + p.numel()
    return pd.Series(counts)


breakdown = pd.DataFrame({name: by_component(m2restore.build_model(name)) for name in compare}).fillna(0).T / 1e6
ax = breakdown.plot.barh(stacked=True, figsize=(9, 0.6 * len(compare) + 1.6), colormap="tab10", width=0.7)
ax.set(xlabel="parameters (millions, trainable + frozen)", ylabel="", title="where the parameters live")
ax.legend(bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=9)
plt.tight_layout()
breakdown.round(3)

# %% [markdown]
# ## 4 · Cost: FLOPs, latency, peak memory
#
# `m2restore.eval.profile.profile_many` runs each model on one random $(1, 3, S, S)$ image with $S$ =
# `profile_size` and reports (see the module docstring for the details):
#
# - **FLOPs** from `torch.utils.flop_counter` (2 per multiply-add of matmuls, convolutions and attention). The
#   selective scan is a loop of element-wise products and sums, which the counter does not see: for M2Restore the
#   figure is a lower bound. M2Restore's CLIP prior runs inside `forward`, so its FLOPs and time are included.
# - **latency**: median wall time of `repeats` rounds after a warm-up. Every round times one run of *each* model, in
#   a rotating order, and the ratio column is the median of the per-round ratios to AdaIR: another process that
#   starts halfway slows all models alike instead of whichever was being timed.
# - **peak memory**: `torch.cuda.max_memory_allocated` on CUDA; on CPU the peak of live tensor storages.

# %%
reference = next((n for n in compare if n.startswith("adair")), compare[0])
cost = profile_many(compare, size=profile_size, device=device, rounds=repeats, backward=backward, reference=reference)
cost = pd.DataFrame(cost).set_index("model")
table = cost[["params_trainable", "params_frozen", "gflops_per_image", "latency_ms", "peak_mem_mb"]].copy()
for col in ("gflops_per_image", "peak_mem_mb"):
    table[f"{col} / {reference}"] = table[col] / table.loc[reference, col]
table[f"latency_ms / {reference}"] = cost["latency_ratio"]  # median of per-round ratios
table.to_csv(out_dir / f"cost_{device}_{profile_size}px.csv")
print(f"{cost['mode'].iloc[0]} at {profile_size}x{profile_size}, {device}, {cost['threads'].iloc[0]} threads; "
      f"memory: {cost['mem_method'].iloc[0]}")
table.round(2)

# %%
long = table.reset_index().assign(params_m=lambda d: (d.params_trainable + d.params_frozen) / 1e6)
panels = [("params_m", "parameters (M)"), ("gflops_per_image", "GFLOPs / image"),
          ("latency_ms", "latency (ms, median)"), ("peak_mem_mb", "peak memory (MiB)")]
fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
for ax, (col, label) in zip(axes, panels):
    sns.barplot(long, x="model", y=col, hue="model", ax=ax, palette="deep", legend=False)
    ax.set(xlabel="", ylabel="", title=label)
    ax.tick_params(axis="x", rotation=30)
    plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    for container in ax.containers:
        ax.bar_label(container, fmt="%.1f", fontsize=8)
fig.suptitle(f"cost at {profile_size}x{profile_size} px on {device} ({cost['mode'].iloc[0]})", y=1.02)
fig.tight_layout()
fig.savefig(out_dir / "cost.png", dpi=80, bbox_inches="tight")

# %% [markdown]
# ## 5 · How the cost grows with the image
#
# None of the three models has quadratic attention over pixels: Restormer's MDTA attends across *channels*
# ($C/h \times C/h$ per head), the Mamba scan is linear in the number of tokens, and convolutions are local. So the
# FLOPs should grow like the pixel count $S^2$, i.e. **FLOPs per pixel should be constant**. The counter tells
# (tiny presets, one forward per size):

# %%
scaling = []
for name in ("promptir_tiny", "adair_tiny", "m2restore_tiny"):
    model = m2restore.build_model(name).eval()
    for size in scaling_sizes:
        with flop_counter() as counter, torch.inference_mode():
            model(torch.rand(1, 3, size, size))
        scaling.append({"model": name, "size": size, "flops_per_pixel": counter.get_total_flops() / size**2})
scaling = pd.DataFrame(scaling)
fig, ax = plt.subplots(figsize=(5, 3.2))
sns.lineplot(scaling, x="size", y="flops_per_pixel", hue="model", marker="o", ax=ax)
ax.set(xscale="log", xticks=scaling_sizes, xticklabels=scaling_sizes, ylabel="FLOPs per pixel",
       xlabel="image side S (px)", ylim=(0, None))
fig.tight_layout()
scaling.pivot(index="model", columns="size", values="flops_per_pixel").round(0)

# %% [markdown]
# The per-pixel cost is close to flat. Where it drifts, two fixed costs are the reason: M2Restore's CLIP prior
# resizes every image to its own fixed input size (its cost per *image* is constant, so per pixel it shrinks as
# $S$ grows), and PromptIR's prompt blocks interpolate learned prompts of a fixed size.
#
# **Reading the cost table.** Parameters are not cost: M2Restore's experts add parameters, but each pixel visits
# only $k = 2$ of the $E = 6$ experts of a layer. The numbers below compare each model with the AdaIR row of the
# table above, which M2Restore extends.

# %%
total = table["params_trainable"] + table["params_frozen"]
for name in (n for n in table.index if n.startswith("m2restore")):
    r = table.loc[name]
    print(f"{name} vs {reference}: {total[name] / total[reference]:.2f}x parameters, "
          f"{r[f'gflops_per_image / {reference}']:.2f}x FLOPs, {r[f'latency_ms / {reference}']:.2f}x latency, "
          f"{r[f'peak_mem_mb / {reference}']:.2f}x peak memory")
