"""Degradation-aware CLIP training (DA-CLIP's idea, simplified): teach the image tower to name degradations.

Pairs are (degraded image, caption of its degradation type) from a folder in CDD-11's layout
(``{train,test}/{clear,<type>}/NNNNNN.png``, read with ``m2restore.data``; ``clear`` is skipped). Two objectives:

- ``ce`` (default): cross-entropy of the scaled cosine logits between the image embedding and the K class
  text embeddings (each the template ensemble of its captions, recomputed with grad every step, so the text
  tower trains too). A plain CLIP loss on a batch holding many images of one type treats same-type pairs as
  negatives; classifying against the K class embeddings has no such false negatives.
- ``clip``: open_clip's symmetric ``ClipLoss`` on (image, one random caption of its class) pairs.

Either is joined by a multi-label *part* loss (``part_weight``): a sigmoid cross-entropy between the image and
the caption of each single degradation it contains (``low_haze_rain`` has the parts low, haze and rain), so
what the tower learns about rain on ``low_rain`` counts for ``haze_rain`` too.

Data: by default (``resynth``) the first images of every batch are degraded afresh from their clean photograph
(``train/clear``) with the dataset's own recipe, ``m2restore.data.degrade`` (the one ``m2restore data mini-cdd11``
uses), and a new random seed: a new rain mask, haze level, noise draw each time, so a few dozen train photographs
give an unlimited stream of examples. Training reads the train split only (the test split is only evaluated).
For a downloaded CDD-11, whose degradations come from another implementation, pass ``resynth=0`` to train on its
files. A resumed run restarts this stream from the stored files.

Training either starts from scratch (``tiny``: ``arch``, by default the small ResNet ``m2r-tiny-clip-rn``),
fine-tunes pretrained weights (``openclip:ViT-B-32:laion2b_s34b_b79k`` on a GPU machine with network), or continues
a trained prior (``tiny:PATH``), on ``device`` (``cpu`` or ``cuda``). The budget is steps and/or wall-clock
minutes, whichever ends first; the cosine learning-rate schedule follows the larger of the two fractions.
``out/last.pt`` holds weights, optimizer, step, elapsed time, RNG and config, so ``resume='auto'`` continues a run;
``out/prior.pt`` is the final weights-only prior that ``build_prior(checkpoint=...)`` loads.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .prior import CHECKPOINT_FORMAT, CLIP_MEAN, CLIP_STD, DegradationPrior, prior_from_clip, resolve_device
from .prompts import ClassPrompts, canonical_name, class_parts, encode_class_texts, resolve_classes
from .tiny import TINY_CLIP_RN

LAST, FINAL = "last.pt", "prior.pt"


@dataclass
class TrainConfig:
    """Degradation-aware training of a CLIP prior (every field is a CLI flag of ``m2restore clip train``)."""

    data: str = ""  # dataset root in CDD-11 layout
    out: str = "runs/clip_prior"
    source: str = "tiny"  # tiny | openclip:ARCH:TAG | local:ARCH:PATH | tiny:PATH (continue a prior)
    arch: str = TINY_CLIP_RN  # architecture trained from scratch by source=tiny (m2r-tiny-clip: the ViT)
    classes: str = "default"  # prompt-bank selection; the logits span all of them (K=13 by default)
    captions_per_step: int = 1  # captions drawn per class each step for the ce loss (0: the full ensemble)
    part_weight: float = 1.0  # weight of the multi-label loss on single degradations (low, haze, rain, ...)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {"vision_cfg.patch_size": 8}
    loss: str = "ce"  # ce | clip
    steps: int = 2000  # step budget (0: none); the recipe measured in m2restore/clip/README.md
    minutes: float = 10.0  # wall-clock budget (0: none)
    batch_size: int = 64
    lr: float = 1e-3  # 1e-3 from scratch; use ~1e-5 to fine-tune pretrained weights
    weight_decay: float = 0.05
    warmup: int = 50  # linear warm-up steps
    crop_scale: tuple[float, float] = (1.0, 1.0)  # random-resized-crop side fraction of the shorter side
    flip: bool = True  # random horizontal flips
    jitter: float = 0.0  # colour jitter (brightness, contrast, saturation in 1 +- jitter); 0.3 helps with few photos
    resynth: int = 16  # images of each batch degraded afresh from their clean photo (0: stored files only)
    eval_every: int = 0  # steps between test-split evaluations (0: only at the end)
    seed: int = 0
    threads: int = 0  # torch CPU threads (0: leave as is)
    device: str = "cpu"  # cpu | cuda | cuda:N
    resume: str = "auto"  # auto | PATH | "" (start fresh)
    progress: bool = True  # tqdm progress bar


# --------------------------------------------------------------------------------------------------------------
# Data: a degradation-labelled folder, held in memory as uint8 tensors
# --------------------------------------------------------------------------------------------------------------

@dataclass
class LabelledImages:
    """Images of one split with class indices into the prior's class list, and the clean photo of each."""

    images: list[torch.Tensor]  # each (3, H, W) uint8
    labels: torch.Tensor  # (N,) int64 indices into class_names
    types: list[str]  # the class names present in the split, in dataset order
    class_names: list[str]
    kinds: list[str] = field(default_factory=list)  # (N) the dataset's type name of each image, e.g. 'haze_rain'
    sources: list[int] = field(default_factory=list)  # (N) index of each image's clean photo in ``clean``
    clean: list[torch.Tensor] = field(default_factory=list)  # each (3, H, W) uint8; only with ``with_clean``


def _read_uint8(path: Path) -> torch.Tensor:
    from m2restore.data.io import read_image

    arr = (read_image(path) * 255.0 + 0.5).astype(np.uint8)  # (H, W, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()  # (3, H, W)


def read_split(root: str | Path, split: str, class_names: Sequence[str], with_clean: bool = False) -> LabelledImages:
    """Read the degraded images of a CDD-11-layout split and label each by its type's class index.

    Args:
        root: dataset root (``m2restore.data.CDD11`` layout; the types present are used).
        split: ``train`` or ``test``.
        class_names: the prior's classes; every type must map to one of them (aliases allowed).
        with_clean: also read the clean photographs (``clear/``) the degraded images were made from.

    Returns:
        The labelled images.
    """
    from m2restore.data.datasets import cdd11_pairs
    from m2restore.data.degrade import CDD11_TYPES

    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no '{split}' split. Expected CDD-11 layout {{train,test}}/<type>/*.png; "
                                f"build one with m2restore.data.mini.make_mini_cdd11(DIR)")
    present = [t for t in CDD11_TYPES if (folder / t).is_dir()]
    index = {name: k for k, name in enumerate(class_names)}
    images, labels, types, kinds, sources, clean, photo = [], [], [], [], [], [], {}
    for pair in cdd11_pairs(root, split, present):
        name = canonical_name(pair.type)
        if name not in index:
            raise ValueError(f"{folder / pair.type}: type '{pair.type}' is not among the prior's classes "
                             f"{list(class_names)}; choose a class set that contains it")
        if name not in types:
            types.append(name)
        images.append(_read_uint8(pair.input))  # (3, H, W)
        labels.append(index[name])
        kinds.append(pair.type)
        if with_clean:
            if pair.target not in photo:
                photo[pair.target] = len(clean)
                clean.append(_read_uint8(pair.target))  # (3, H, W)
            sources.append(photo[pair.target])
    if not images:
        raise FileNotFoundError(f"{folder}: no degraded images found")
    return LabelledImages(images, torch.tensor(labels), types, list(class_names), kinds, sources, clean)


def color_jitter(x: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    """Per-image random brightness, contrast and saturation factors in [1 - strength, 1 + strength].

    Decouples a photograph's own exposure and colour from the degradation labels (a dark photo is not
    low-light; low light also brings noise and a gamma curve).

    Args:
        x: (B, 3, H, W) in [0, 1].
        strength: 0 disables.
        gen: random generator.

    Returns:
        (B, 3, H, W) in [0, 1].
    """
    if strength <= 0:
        return x
    b, c, s = (1 + strength * (2 * torch.rand(3, x.shape[0], 1, 1, 1, generator=gen) - 1)).unbind(0)  # (B, 1, 1, 1)
    x = x * b  # brightness
    x = x.mean(dim=(1, 2, 3), keepdim=True) + (x - x.mean(dim=(1, 2, 3), keepdim=True)) * c  # contrast
    gray = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)  # (B, 1, H, W)
    return (gray + (x - gray) * s).clamp(0, 1)  # saturation


def random_crops(images: Sequence[torch.Tensor], size: int, scale: tuple[float, float], flip: bool,
                 gen: torch.Generator) -> torch.Tensor:
    """Random square crops (side = a fraction in ``scale`` of the shorter side) resized to ``size``, in [0, 1].

    Args:
        images: uint8 (3, H, W) images.
        size: output side.
        scale: range of the crop side as a fraction of the image's shorter side; (1, 1) keeps native scale.
        flip: random horizontal flips.
        gen: the generator all randomness draws from.

    Returns:
        (B, 3, size, size) float batch.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    crops = []
    for img in images:
        h, w = img.shape[-2:]
        frac = scale[0] + (scale[1] - scale[0]) * float(torch.rand((), generator=gen))
        side = max(8, round(min(h, w) * frac))
        top = int(torch.randint(0, h - side + 1, (), generator=gen))
        left = int(torch.randint(0, w - side + 1, (), generator=gen))
        crop = img[:, top:top + side, left:left + side]  # (3, side, side) uint8
        if side != size:
            crop = TF.resize(crop, [size, size], interpolation=InterpolationMode.BICUBIC, antialias=True)
        crops.append(crop)
    x = torch.stack(crops).float().div_(255.0)  # (B, 3, size, size)
    if flip:
        mirror = torch.rand(len(crops), generator=gen) < 0.5  # (B,)
        x[mirror] = x[mirror].flip(-1)
    return x


# --------------------------------------------------------------------------------------------------------------
# Model and checkpoints
# --------------------------------------------------------------------------------------------------------------

def _init_model(cfg: TrainConfig) -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any], str]:
    """The CLIP to train, its open_clip config, its preprocessing and its architecture name."""
    import open_clip

    from .prior import resolve_pretrained
    from .tiny import build_clip, model_config

    kind, _, rest = cfg.source.partition(":")
    pre = {"mean": list(CLIP_MEAN), "std": list(CLIP_STD), "interpolation": "bicubic"}
    if kind == "tiny" and not rest:
        mcfg = model_config(cfg.arch, cfg.model_overrides)
        return build_clip(mcfg, seed=cfg.seed), mcfg, pre, cfg.arch
    if kind == "tiny":
        ckpt = torch.load(rest, map_location="cpu", weights_only=True)
        model = build_clip(ckpt["model_cfg"])
        model.load_state_dict(ckpt["model"])
        return model, ckpt["model_cfg"], ckpt["preprocess"], ckpt["model_name"]
    if kind in ("openclip", "local"):
        arch, _, ref = rest.partition(":")
        pcfg = open_clip.get_pretrained_cfg(arch, ref) if kind == "openclip" else {}
        weights = resolve_pretrained(arch, ref) if kind == "openclip" else ref
        mcfg = model_config(arch)
        if pcfg.get("quick_gelu"):
            mcfg["quick_gelu"] = True
        model = open_clip.create_model(arch, pretrained=weights, force_quick_gelu=bool(pcfg.get("quick_gelu")))
        pre = {"mean": list(pcfg.get("mean", CLIP_MEAN)), "std": list(pcfg.get("std", CLIP_STD)),
               "interpolation": pcfg.get("interpolation", "bicubic")}
        return model, mcfg, pre, arch
    raise ValueError(f"cannot train from source '{cfg.source}' (tiny, tiny:PATH, openclip:ARCH:TAG, local:ARCH:PATH)")


def _checkpoint(model: torch.nn.Module, mcfg: dict, pre: dict, arch: str, prompts: Sequence[ClassPrompts],
                cfg: TrainConfig, step: int, elapsed: float, metrics: dict, optimizer: Any = None) -> dict[str, Any]:
    from m2restore.train.checkpoint import rng_state

    ckpt = {
        "format": CHECKPOINT_FORMAT, "model_name": arch, "model_cfg": mcfg,
        "model": {k: v.cpu() for k, v in model.state_dict().items()},
        "preprocess": pre, "classes": [[p.name, list(p.captions)] for p in prompts], "step": step,
        "elapsed": elapsed, "metrics": metrics, "config": dataclasses.asdict(cfg),
    }
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
        ckpt["rng"] = rng_state()
    return ckpt


def prior_from_model(model: torch.nn.Module, mcfg: dict, pre: dict, prompts: Sequence[ClassPrompts],
                     source: str = "training") -> DegradationPrior:
    """A frozen prior around a copy of a model being trained (for evaluation during training)."""
    from copy import deepcopy

    return prior_from_clip(deepcopy(model), mcfg, list(prompts), source=source, mean=pre["mean"], std=pre["std"],
                      interpolation=pre["interpolation"])


# --------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------

def _sample_prompts(prompts: Sequence[ClassPrompts], n: int, gen: torch.Generator) -> list[ClassPrompts]:
    """``n`` random captions per class (all of them when ``n`` is 0 or covers the class)."""
    if n <= 0:
        return list(prompts)
    out = []
    for p in prompts:
        pick = torch.randperm(len(p.captions), generator=gen)[:n].tolist()
        out.append(ClassPrompts(p.name, tuple(p.captions[i] for i in pick)))
    return out


def _loss(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[ClassPrompts], x: torch.Tensor,
          labels: torch.Tensor, cfg: TrainConfig, gen: torch.Generator,
          parts: tuple[list[ClassPrompts], torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """The training objective on one normalised batch ``x`` (B, 3, S, S) with class indices ``labels`` (B,).

    ``parts`` = (part prompts, (K, P) membership, learnable bias) adds the multi-label part loss: a sigmoid
    cross-entropy between the image and each single degradation's caption, so that "rain" learnt on
    ``low_rain`` also counts for ``haze_rain``.
    """
    image = F.normalize(model.encode_image(x), dim=-1)  # (B, E)
    scale = model.logit_scale.exp().clamp(max=100)
    if cfg.loss == "ce":
        text = encode_class_texts(model, tokenizer, _sample_prompts(prompts, cfg.captions_per_step, gen))  # (K, E)
        loss = F.cross_entropy(scale * image @ text.t(), labels)
    elif cfg.loss == "clip":
        from open_clip import ClipLoss

        picks = [_sample_prompts([prompts[k]], 1, gen)[0].captions[0] for k in labels.tolist()]
        text = F.normalize(model.encode_text(tokenizer(picks).to(x.device)), dim=-1)  # (B, E)
        loss = ClipLoss()(image, text, scale)
    else:
        raise ValueError(f"unknown loss '{cfg.loss}' (ce or clip)")
    if parts is not None and cfg.part_weight > 0:
        part_prompts, member, bias = parts
        part_text = encode_class_texts(model, tokenizer, _sample_prompts(part_prompts, cfg.captions_per_step, gen))
        logits = scale * image @ part_text.t() + bias  # (B, P)
        loss = loss + cfg.part_weight * F.binary_cross_entropy_with_logits(logits, member[labels])
    return loss


def _lr_factor(progress: float, step: int, warmup: int) -> float:
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    return warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class PriorTrainer:
    """The training loop of ``train_prior``, with its state in one place (resume, budget, logs).

    Args:
        cfg: the training config.
        callback: called as ``callback(step, logs)`` after every step.
    """

    def __init__(self, cfg: TrainConfig, callback: Callable[[int, dict], None] | None = None) -> None:
        from .tiny import tokenizer_for

        if not cfg.data:
            raise ValueError("train_prior needs data=DATASET (a folder in CDD-11 layout)")
        if cfg.steps <= 0 and cfg.minutes <= 0:
            raise ValueError("give a budget: steps > 0 and/or minutes > 0")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.cfg, self.callback, self.out = cfg, callback, Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.device = resolve_device(cfg.device)
        self.model, self.mcfg, self.pre, self.arch = _init_model(cfg)
        self.model.to(self.device)
        self.prompts = resolve_classes(cfg.classes)
        self.train = read_split(cfg.data, "train", [p.name for p in self.prompts], with_clean=cfg.resynth > 0)
        self.tokenizer = tokenizer_for(self.mcfg)
        self.size = int(self.mcfg["vision_cfg"]["image_size"])
        self.mean = torch.tensor(self.pre["mean"], device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(self.pre["std"], device=self.device).view(1, 3, 1, 1)
        named = list(self.model.named_parameters())
        decay = [p for n, p in named if p.ndim >= 2 and "embedding" not in n]
        no_decay = [p for n, p in named if p.ndim < 2 or "embedding" in n]
        self.parts, member = class_parts(self.prompts)  # (P parts), (K, P)
        self.member = member.to(self.device)  # (K, P)
        self.part_bias = torch.nn.Parameter(torch.zeros((), device=self.device))  # sigmoid-loss offset (SigLIP's)
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                            {"params": no_decay + [self.part_bias], "weight_decay": 0.0}], lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step, self.elapsed, self.cpu = 0, 0.0, 0.0
        self.history: list[float] = []
        self.evals: list[tuple[int, float, float]] = []  # (step, CPU seconds, test accuracy)
        self.order, self.cursor = torch.randperm(len(self.train.images), generator=self.gen), 0

    def progress(self) -> float:
        """Fraction of the budget used: the larger of the step and the wall-clock fractions."""
        cfg = self.cfg
        return max(self.step / cfg.steps if cfg.steps > 0 else 0.0,
                   self.elapsed / (60 * cfg.minutes) if cfg.minutes > 0 else 0.0)

    def resume(self) -> bool:
        """Continue from ``out/last.pt`` (``resume='auto'``) or a given file; returns whether it did."""
        from m2restore.train.checkpoint import set_rng_state

        cfg = self.cfg
        path = self.out / LAST if cfg.resume == "auto" else (Path(cfg.resume) if cfg.resume else None)
        if path is None or (cfg.resume == "auto" and not path.is_file()):
            return False
        if not path.is_file():
            raise FileNotFoundError(f"resume={cfg.resume}: no such checkpoint")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(ckpt["model"])
        with torch.no_grad():
            self.part_bias.copy_(ckpt["part_bias"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        self.gen.set_state(ckpt["gen"])
        self.order, self.cursor = ckpt["order"], ckpt["cursor"]
        self.step, self.elapsed = ckpt["step"], ckpt["elapsed"]
        logs = ckpt["metrics"]
        self.cpu, self.history, self.evals = logs["cpu_seconds"], logs["loss_history"], logs["evals"]
        return True

    def logs(self) -> dict[str, Any]:
        return {"loss_history": self.history, "cpu_seconds": self.cpu, "evals": self.evals}

    def save_last(self) -> None:
        from m2restore.train.checkpoint import atomic_torch_save

        ckpt = _checkpoint(self.model, self.mcfg, self.pre, self.arch, self.prompts, self.cfg, self.step,
                           self.elapsed, self.logs(), self.optimizer)
        extra = {"gen": self.gen.get_state(), "order": self.order, "cursor": self.cursor,
                 "part_bias": self.part_bias.detach().cpu()}
        atomic_torch_save({**ckpt, **extra}, self.out / LAST)

    def resynthesise(self, indices: Sequence[int]) -> None:
        """Replace training images by fresh syntheses of their (clean photo, type) with new random seeds.

        The recipe is ``m2restore.data.degrade``'s, the one ``m2restore data mini-cdd11`` built the dataset with;
        only the train split's clean photographs are used. A new rain mask, haze level, noise draw... each time
        turns the few train photographs into an unlimited stream of degraded images.
        """
        from m2restore.data.degrade import degrade

        for i in indices:
            clean = self.train.clean[self.train.sources[i]].permute(1, 2, 0).numpy() / np.float32(255)  # (H, W, 3)
            seed = int(torch.randint(0, 2**31 - 1, (), generator=self.gen))
            out = (degrade(clean, self.train.kinds[i], seed) * 255.0 + 0.5).astype(np.uint8)  # (H, W, 3)
            self.train.images[i] = torch.from_numpy(out).permute(2, 0, 1).contiguous()  # (3, H, W)

    def train_step(self) -> float:
        """One optimisation step on the next batch; returns the loss."""
        cfg = self.cfg
        t0, c0 = time.monotonic(), time.process_time()
        if self.cursor + cfg.batch_size > len(self.order):
            self.order, self.cursor = torch.randperm(len(self.train.images), generator=self.gen), 0
        idx = self.order[self.cursor:self.cursor + cfg.batch_size]  # (B,)
        self.cursor += cfg.batch_size
        self.resynthesise(idx[:cfg.resynth].tolist())
        x = random_crops([self.train.images[i] for i in idx], self.size, cfg.crop_scale, cfg.flip, self.gen)
        x = color_jitter(x, cfg.jitter, self.gen).to(self.device)  # (B, 3, S, S)
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * _lr_factor(self.progress(), self.step, cfg.warmup)
        self.model.train()
        loss = _loss(self.model, self.tokenizer, self.prompts, (x - self.mean) / self.std,
                     self.train.labels[idx].to(self.device), cfg, self.gen, (self.parts, self.member, self.part_bias))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        self.elapsed += time.monotonic() - t0
        self.cpu += time.process_time() - c0
        self.history.append(round(loss.item(), 5))
        return self.history[-1]

    def evaluate(self, out_dir: Path | None = None) -> dict[str, Any]:
        from .evaluate import evaluate_prior

        prior = prior_from_model(self.model, self.mcfg, self.pre, self.prompts)
        res = evaluate_prior(prior, self.cfg.data, out_dir=out_dir, progress=False)
        self.evals.append((self.step, round(self.cpu, 1), res["accuracy"]))
        return res

    def fit(self) -> dict[str, Any]:
        """Train until the budget is spent; write ``last.pt``, ``prior.pt``, ``summary.json``, confusion files."""
        from tqdm.auto import tqdm

        from m2restore.train.checkpoint import atomic_torch_save

        cfg = self.cfg
        bar = tqdm(total=1000, disable=not cfg.progress, desc="clip train", unit="‰",
                   initial=int(1000 * self.progress()))
        last_save = time.monotonic()
        while self.progress() < 1.0:
            loss = self.train_step()
            bar.set_postfix(step=self.step, loss=f"{loss:.3f}")
            bar.update(int(1000 * self.progress()) - bar.n)
            if self.callback is not None:
                self.callback(self.step, {"loss": loss, "lr": self.optimizer.param_groups[0]["lr"],
                                          "elapsed": self.elapsed})
            if time.monotonic() - last_save > 120:  # keep the resume point fresh on long runs
                self.save_last()
                last_save = time.monotonic()
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.progress() < 1.0:  # the last: below
                bar.write(f"step {self.step} ({self.cpu / 60:.1f} CPU min): zero-shot accuracy "
                          f"{self.evaluate()['accuracy']:.3f}")
        bar.close()
        summary: dict[str, Any] = {
            "checkpoint": str(self.out / FINAL), "steps": self.step, "minutes": self.elapsed / 60,
            "cpu_minutes": self.cpu / 60, "loss_first": self.history[0] if self.history else None,
            "loss_last": self.history[-1] if self.history else None,
        }
        if (Path(cfg.data) / "test").is_dir():
            res = self.evaluate(out_dir=self.out)
            summary["eval"] = {k: res[k] for k in ("accuracy", "accuracy_full", "per_type", "confused", "n")}
        self.save_last()
        final = _checkpoint(self.model, self.mcfg, self.pre, self.arch, self.prompts, cfg, self.step, self.elapsed,
                            {**summary, "evals": self.evals})
        atomic_torch_save(final, self.out / FINAL)
        text = json.dumps({**summary, "evals": self.evals, "config": dataclasses.asdict(cfg)}, indent=2)
        (self.out / "summary.json").write_text(text)
        return {**summary, "evals": self.evals, "loss_history": self.history}


def train_prior(cfg: TrainConfig | None = None, callback: Callable[[int, dict], None] | None = None,
                **overrides: Any) -> dict[str, Any]:
    """Train (or fine-tune) a CLIP degradation prior and write ``out/prior.pt`` (resumes ``out/last.pt``).

    Args:
        cfg: the training config; keyword ``overrides`` replace its fields (``train_prior(data=..., minutes=2)``).
        callback: called as ``callback(step, logs)`` after every step (notebooks plot from it).

    Returns:
        Summary: ``checkpoint`` path, ``steps``, ``minutes``, ``cpu_minutes``, ``loss_history``, ``evals``
        (step, CPU seconds, accuracy) and the final ``eval`` metrics when the dataset has a test split.
    """
    trainer = PriorTrainer(dataclasses.replace(cfg or TrainConfig(), **overrides), callback)
    trainer.resume()
    return trainer.fit()
