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
# # 07 · Training: one trainer for every model, recipes, schedules and exact resume
#
# `m2restore.train` is a small model-agnostic trainer in the spirit of minGPT's: any registered model trains with the
# same loop, configured by layered recipes (dataclass defaults ← YAML ← arguments ← dotted overrides) and observed
# through callbacks. `accelerate` takes care of the device, bf16 autocast and multi-GPU, so the same call trains a
# tiny preset on a laptop CPU and the full model on GPUs.
#
# What you will learn:
# - the objective and optimizer shared by PromptIR, AdaIR and M2Restore, with M2Restore's load-balancing term;
# - the bundled recipes (`m2restore/configs/*.yaml`): the papers' and the `cpu-tiny` one, side by side;
# - the linear warm-up + cosine learning-rate schedule, per step and per epoch, re-derived from scratch;
# - how to hook into training with a **callback** (here: one that records and prints the loss curve);
# - on the CPU, `cpu-tiny` on mini CDD-11; with `device="cuda"`, the paper's M2Restore recipe;
# - exact resume: $N$ steps, then resume for $N$ more, gives bit-for-bit the weights of $2N$ steps.

# %% tags=["parameters"]
smoke = False
device = "cpu"
seed = 0
out_dir = ""
dataset = "mini-cdd11"
data_root = ""
model = ""
recipe = ""
budget_steps = 300
prior_checkpoint = ""
prior_minutes = 2.0
print_every = 50
resume_steps = 6

# %%
import math
import shutil
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import display

from m2restore.config import load_yaml
from m2restore.notebook import resolve_data, resolve_prior, setup
from m2restore.train import Callback, build_config, read_checkpoint, train
from m2restore.train.cli import RECIPES, recipe_path
from m2restore.train.config import resolve_schedule

out_dir = setup("07_training", out_dir, device, seed)  # output folder, device check, torch seed
cuda = device.startswith("cuda")
model = model or ("m2restore" if cuda else "m2restore_tiny")
recipe = recipe or ("m2restore" if cuda else "cpu-tiny")
if smoke:
    budget_steps, print_every, resume_steps = 2, 1, 1
sns.set_theme(style="whitegrid", context="notebook")
print(f"model {model}, recipe {recipe}, device {device}, budget {budget_steps or 'the recipe length'} steps")

# %% [markdown]
# ## 1 · The objective
#
# For a batch of degraded crops $x$ and clean targets $y$, every model minimises
#
# $$\mathcal L = \tfrac{1}{N}\,\lVert f_\theta(x) - y \rVert_1 + w_{\rm aux} \textstyle\sum_j \mathcal L_j^{\rm aux}$$
#
# where the auxiliary terms come from `model(x, return_aux=True).aux_losses`, already multiplied by their own
# weights. PromptIR and AdaIR have none. M2Restore returns the load balance of its three routing layers,
# $\lambda \sum_{\ell} \bigl(\mathrm{cv}^2(\text{importance}_\ell) + \mathrm{cv}^2(\text{load}_\ell)\bigr)$ with
# $\lambda = 0.01$ and $\mathrm{cv}^2 = \operatorname{var}/\text{mean}^2$: it is zero when every expert receives the
# same share of tokens, and keeps the router from collapsing onto a favourite expert.
#
# The optimizer is AdamW. One optimizer step averages the gradients of `grad_accum` micro-batches on each of $P$
# processes, so the effective batch is `batch_size` × `grad_accum` × $P$. The global gradient norm may be clipped,
# an exponential moving average of the weights may be kept, and a NaN/inf loss stops the run before the weights are
# touched.
#
# ## 2 · Recipes
#
# A recipe is a YAML file of `ExperimentConfig` fields. The papers' recipes count epochs (warm-up 15, then cosine);
# `cpu-tiny` counts steps and is sized for a few hundred steps of a `_tiny` preset on two cores.

# %%
rows = []
for path in sorted(RECIPES.glob("*.yaml")):
    cfg = build_config(config_file=str(path))
    t, d = cfg.train, cfg.data
    rows.append({
        "recipe": path.stem, "model": cfg.model if "model" in load_yaml(path) else "(any: --model)",
        "patch": d.patch_size, "batch": d.batch_size,
        "grad_accum": t.grad_accum, "augment": d.augment, "lr": t.lr,
        "length": f"{t.epochs:g} epochs" if t.epochs else f"{t.max_steps} steps",
        "warm-up": f"{t.warmup_epochs:g} epochs" if t.warmup_epochs else f"{t.warmup_steps} steps",
        "cosine horizon": f"{t.cosine_epochs:g} epochs" if t.cosine_epochs else "run length",
        "lr changes per": t.lr_interval, "grad_clip": t.grad_clip, "precision": t.precision,
    })
recipes = pd.DataFrame(rows).set_index("recipe")
display(recipes)

# %% [markdown]
# ## 3 · Warm-up + cosine, from scratch
#
# With $W$ warm-up units and a cosine horizon $T$ (units are steps, or epochs when the learning rate changes once per
# epoch as in the papers' Lightning code), the multiplier of the base rate at unit $t$ is
#
# $$\eta(t) = \begin{cases} \dfrac{t+1}{W} \text{ (per step)}, \quad \dfrac{t}{\max(1, W - 1)} \text{ (per epoch)}
#   & t < W \\[2mm]
#   m + (1-m)\,\dfrac{1 + \cos\bigl(\pi \min(1, \tfrac{t - W}{T - W})\bigr)}{2} & t \ge W \end{cases}$$
#
# with $m$ = `min_lr / lr`. The per-epoch warm-up starts at **zero**: the papers' first epoch trains at a learning
# rate of 0 (pl_bolts' `LinearWarmupCosineAnnealingLR` stepped once per epoch). Below, this formula in plain Python
# against the package's `Schedule.factor`, for the `cpu-tiny` recipe and for the M2Restore paper recipe on the full
# CDD-11 (13,013 training pairs).

# %%
def factor_from_scratch(step: int, warmup: float, horizon: float, per_epoch: int | None, floor: float = 0.0) -> float:
    """Warm-up + cosine multiplier of optimizer step ``step``; ``per_epoch``: steps per epoch if the LR is per epoch."""
    t = step if per_epoch is None else step // per_epoch
    if t < warmup:
        return (t + 1) / warmup if per_epoch is None else t / max(1.0, warmup - 1)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, (t - warmup) / (horizon - warmup))))


def schedule_of(recipe_name: str, n_pairs: int, **train_fields) -> tuple:
    """(Schedule, TrainConfig) of a recipe for a training set of ``n_pairs`` pairs on one process."""
    cfg = build_config(config_file=recipe_path(recipe_name), train=train_fields)
    return resolve_schedule(cfg.train, n_pairs // cfg.data.batch_size), cfg.train


curves = {}
for label, name, n_pairs, fields in [
    ("cpu-tiny, 300 steps", "cpu-tiny", 264, {}),
    ("M2Restore paper recipe, CDD-11", "m2restore", 13_013, {}),
]:
    sched, t = schedule_of(name, n_pairs, **fields)
    steps = np.arange(sched.total_steps)
    ours = np.array([factor_from_scratch(int(s), sched.warmup, sched.horizon,
                                         sched.steps_per_epoch if sched.unit == "epoch" else None) for s in steps])
    pkg = np.array([sched.factor(int(s)) for s in steps])
    assert np.allclose(ours, pkg), f"{label}: the from-scratch schedule disagrees with Schedule.factor"
    curves[label] = (steps, t.lr * pkg, sched)
    print(f"{label}: {sched.total_steps:,} steps ({sched.steps_per_epoch:,} per epoch), warm-up {sched.warmup:g} "
          f"{sched.unit}s, horizon {sched.horizon:g} {sched.unit}s; lr at the last step {t.lr * pkg[-1]:.2e}; "
          f"from scratch == package: True")

fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
for ax, (label, (steps, lrs, sched)) in zip(axes, curves.items()):
    ax.plot(steps, lrs)
    ax.set(title=label, xlabel="optimizer step", ylabel="learning rate")
    if sched.unit == "epoch":
        top = ax.secondary_xaxis("top", functions=(lambda s, n=sched.steps_per_epoch: s / n,
                                                   lambda e, n=sched.steps_per_epoch: e * n))
        top.set_xlabel("epoch")
fig.tight_layout()
fig.savefig(out_dir / "lr_schedules.png", dpi=80, bbox_inches="tight")

# %% [markdown]
# The M2Restore recipe runs 200 epochs against a 180-epoch cosine horizon: in this schedule the learning rate reaches
# `min_lr` (0) at epoch 180 and is held there, so with AdamW (whose weight decay is also scaled by the learning rate)
# the last 20 epochs leave the weights unchanged. PromptIR (120 vs 150 epochs) and AdaIR (150 vs 180) stop before
# their horizon instead, with the learning rate still above zero.
#
# ## 4 · A callback that records the loss curve
#
# A callback overrides any of `on_train_start`, `on_step_end` (every step: `step`, `epoch`, `lr`, `loss`),
# `on_log` (every `log_interval` steps: interval means of `loss`, `l1`, each `aux/*` term and the throughput),
# `on_validation_end`, `on_checkpoint` and `on_train_end`; setting `trainer.should_stop = True` ends the run cleanly.
# The built-in ones write `train_log.csv`/`val_log.csv`, TensorBoard scalars and a progress bar.

# %%
class LossCurve(Callback):
    """Keep every step's loss and learning rate, every validation PSNR, and print a line every ``every`` steps."""

    def __init__(self, every: int) -> None:
        self.every, self.steps, self.val, self.start = every, [], [], 0.0

    def on_train_start(self, trainer) -> None:
        self.start = time.perf_counter()
        t = trainer.cfg.train
        self.schedule, self.base_lr, self.min_factor = trainer.schedule, t.lr, t.min_lr / t.lr
        print(f"{trainer.model_name}: {trainer.total_steps} steps on {trainer.device}, effective batch "
              f"{trainer.cfg.data.batch_size * trainer.cfg.train.grad_accum * trainer.world}")

    def on_step_end(self, trainer, logs) -> None:
        self.steps.append(dict(logs))
        if logs["step"] % self.every == 0:
            print(f"step {logs['step']:5d}  loss {logs['loss']:.4f}  lr {logs['lr']:.2e}  "
                  f"{time.perf_counter() - self.start:6.0f} s")

    def on_validation_end(self, trainer, metrics) -> None:
        self.val.append(dict(metrics))
        print(f"step {metrics['step']:5d}  validation PSNR {metrics['val_psnr']:.2f} dB")

    def on_train_end(self, trainer, result) -> None:
        print(f"stopped ({result.stopped}) after {result.steps} steps, {result.wall_time_s:.0f} s")


class StopAt(Callback):
    """Ask the trainer to stop after optimizer step ``step`` (a clean stop: final validation and checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, logs) -> None:
        if logs["step"] >= self.step:
            trainer.should_stop = True


# %% [markdown]
# ## 5 · Training on mini CDD-11
#
# Data: `data_root` if given, else the mini CDD-11 that `make demo` builds (`data/mini-cdd11`), else one built here
# offline. M2Restore needs a trained CLIP prior for meaningful routing: `prior_checkpoint`, else `make demo`'s, else
# one trained here for `prior_minutes` (smoke mode keeps the untrained prior). On CUDA the paper recipe's 224-px
# crops need real data (`dataset="cdd11"`, `data_root=...`); on the 128-px mini crops the patch is capped.

# %%
root = resolve_data(data_root, out_dir, smoke, dataset)  # data_root, else `make demo`'s, else built here
# prior_checkpoint, else `make demo`'s, else trained here (None: the model has no tiny prior, or smoke mode)
prior_path = resolve_prior(prior_checkpoint, root, out_dir, smoke, prior_minutes, model=model)
overrides = {"prior_checkpoint": str(prior_path)} if prior_path is not None else {}

data = {"dataset": dataset, "root": str(root)}
train_fields = {"tensorboard": False, "progress": False}
if budget_steps:
    train_fields.update(max_steps=budget_steps, epochs=None)
if smoke:
    data.update(patch_size=32, batch_size=2)
    train_fields.update(warmup_steps=1, val_interval=0, log_interval=1)
elif dataset.startswith("mini"):
    side = int(__import__("json").loads((root / "mini_info.json").read_text())["params"]["size"])
    if build_config(config_file=recipe_path(recipe)).data.patch_size > side:
        data["patch_size"] = side
        print(f"recipe '{recipe}' crops exceed the {side}-px mini images: patch_size capped to {side}")
run_dir = out_dir / "run"
shutil.rmtree(run_dir, ignore_errors=True)  # this notebook's own run folder: a fresh run every time
curve = LossCurve(print_every)
result = train(config_file=recipe_path(recipe), model=model, model_overrides=overrides, seed=seed,
               out_dir=str(run_dir), data=data, train=train_fields, callbacks=[curve])
print(f"\nbest validation PSNR {result.best_metric:.2f} dB at step {result.best_step}; "
      f"files: {sorted(p.name for p in run_dir.iterdir())}")

# %% [markdown]
# The run folder holds the resolved `config.yaml`, the logs, `result.json` (with the recipe facts a results table
# needs) and `checkpoints/last.pt` + `best.pt`. A checkpoint describes itself:

# %%
ckpt = read_checkpoint(result.last_checkpoint)
print({k: ckpt[k] for k in ("format", "model_name", "step", "epoch", "best_metric")})
print("train_protocol:", ckpt["train_protocol"])

# %% [markdown]
# ### Loss curve and learning rate
#
# The callback saw every step; the `on_log` interval means (kept by the built-in `History`) split the loss into its
# L1 and balance parts. The learning rate it recorded must be exactly the planned schedule.

# %%
steps_df = pd.DataFrame(curve.steps)
hist = pd.DataFrame(result.history["train"])
planned = [curve.base_lr * curve.schedule.factor(s - 1, curve.min_factor) for s in steps_df.step]
assert np.allclose(steps_df.lr, planned, rtol=1e-12), "the recorded learning rates differ from the schedule"
print(f"learning rate of all {len(steps_df)} steps == lr x Schedule.factor(step): True")

fig, axes = plt.subplots(1, 3, figsize=(16, 3.6))
ax = axes[0]
ax.plot(steps_df.step, steps_df.loss, alpha=0.3, label="loss per step")
ax.plot(steps_df.step, steps_df.loss.ewm(alpha=0.1).mean(), label="exponential moving average")
ax.set(xlabel="step", ylabel="training loss", yscale="log", title=f"{model}: loss")
ax.legend()
ax = axes[1]
if "l1" in hist:
    ax.plot(hist.step, hist.l1, label="L1 (interval mean)")
for col in (c for c in hist.columns if c.startswith("aux/")):
    ax.plot(hist.step, hist[col], label=f"{col} (weighted)")
ax.set(xlabel="step", yscale="log", title="loss terms")
ax.legend()
ax = axes[2]
ax.plot(steps_df.step, steps_df.lr, label="lr used (callback)")
ax.plot(steps_df.step, planned, "--", label="planned schedule")
ax.legend(loc="lower center")
val = pd.DataFrame(curve.val)
if len(val):
    twin = ax.twinx()
    twin.plot(val.step, val.val_psnr, "o-", color="tab:red", label="validation PSNR")
    twin.set_ylabel("validation PSNR (dB)", color="tab:red")
    twin.grid(False)
ax.set(xlabel="step", ylabel="learning rate", title="schedule and validation")
fig.tight_layout()
fig.savefig(out_dir / "training_curves.png", dpi=80, bbox_inches="tight")

# %% [markdown]
# ## 6 · Exact resume
#
# A checkpoint holds the weights, the optimizer and scheduler states, the step and epoch, and every random
# generator's state (Python, NumPy, torch CPU and CUDA, per process). The data order is a permutation seeded by
# (seed, epoch), so after a resume the loader continues at the very next micro-batch; validation runs inside a forked
# random state, so it never shifts the training stream. Hence on the CPU: **$N$ steps, then resume for $N$ more,
# equals $2N$ steps, bit for bit**. We check it with `StopAt` as the interruption and a validation in between.

# %%
short = {
    "config_file": recipe_path("cpu-tiny"), "model": model, "model_overrides": overrides, "seed": seed,
    "data": {"dataset": dataset, "root": str(root), "patch_size": 32, "batch_size": 2},
    "train": {"max_steps": 2 * resume_steps, "warmup_steps": resume_steps // 2, "val_interval": resume_steps,
              "save_interval": 0, "log_interval": 1, "tensorboard": False, "progress": False},
}
for sub in ("resume_full", "resume_split"):
    shutil.rmtree(out_dir / sub, ignore_errors=True)
full = train(out_dir=str(out_dir / "resume_full"), **short)
half = train(out_dir=str(out_dir / "resume_split"), callbacks=[StopAt(resume_steps)], **short)
rest = train(out_dir=str(out_dir / "resume_split"), resume="auto", **short)
a, b = read_checkpoint(full.last_checkpoint), read_checkpoint(rest.last_checkpoint)
worst = max((a["model"][k].float() - b["model"][k].float()).abs().max().item() for k in a["model"])
same = all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
moments = all(torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
              for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()))
print(f"{2 * resume_steps} steps: weights {'identical' if same else 'DIFFERENT'} to {resume_steps} + "
      f"{resume_steps} resumed steps (max |diff| {worst:.1e}), AdamW moments identical: {moments}; "
      f"final validation {full.val_psnr:.4f} vs {rest.val_psnr:.4f} dB")
if not cuda:  # GPU kernels (atomics, cuDNN autotuning) are not bit-reproducible
    assert half.steps == resume_steps and same and moments and full.val_psnr == rest.val_psnr

# %% [markdown]
# ## 7 · The same from the command line
#
# ```bash
# m2restore train --config cpu-tiny --model m2restore_tiny --dataset mini-cdd11 --data-root data/mini-cdd11 \
#     --out runs/m2r --set model.prior_checkpoint=data/clip-prior-tiny/prior.pt
# m2restore train ... --out runs/m2r --resume auto --max-steps 600          # continue the run
# accelerate launch --num_processes 4 -m m2restore train --config m2restore --dataset cdd11 --data-root DIR
# ```
