"""The frozen CLIP degradation prior that guides the restoration models' gating.

``DegradationPrior`` maps images in [0, 1] to (a) a probability vector over the prompt bank's degradation
classes and (b) CLIP's image embedding (plus, for DA-CLIP, its degradation embedding). It does CLIP's own
preprocessing (resize the shorter side, centre crop, CLIP mean/std) — the release fed CLIP raw pixels — and
is frozen: no parameter requires grad, it stays in eval mode when its parent trains, and it runs without
autograd.

Sources (``build_prior(source, ...)``):

    tiny                          m2r-tiny-clip with random weights (tests, shapes, CPU smoke runs)
    tiny:PATH  (or checkpoint=PATH)  a prior trained by ``m2restore clip train`` (any architecture)
    openclip:ARCH:TAG             open_clip pretrained weights, e.g. openclip:ViT-B-32:laion2b_s34b_b79k;
                                  read from the local cache; downloaded only with allow_download=True or
                                  M2RESTORE_ALLOW_DOWNLOAD=1, otherwise it fails at once saying what to fetch
    local:ARCH:PATH               an open_clip weights file for a built-in architecture
    daclip:PATH                   DA-CLIP's daclip_ViT-B-32.pt (probabilities from its degradation embedding)
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .prompts import ClassPrompts, encode_class_texts, resolve_classes

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP normalisation (open_clip's default)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ALLOW_DOWNLOAD_ENV = "M2RESTORE_ALLOW_DOWNLOAD"
CHECKPOINT_FORMAT = "m2restore-clip-prior/1"


@dataclass
class PriorOutput:
    """What the prior tells a restoration model about a batch.

    Attributes:
        probs: (B, K) degradation probabilities over the prior's classes, each row sums to 1.
        image_embed: (B, E) CLIP image (content) embedding, unit norm.
        degra_embed: (B, E) DA-CLIP degradation embedding, unit norm; None for plain CLIP.
    """

    probs: torch.Tensor
    image_embed: torch.Tensor
    degra_embed: torch.Tensor | None = None


class ClipImageEncoder(nn.Module):
    """Plain open_clip image tower: returns (content embedding, None)."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.visual(x), None  # (B, E)


class DegradationPrior(nn.Module):
    """Frozen CLIP classifier of degradations with template-ensembled text embeddings.

    Args:
        encoder: a module mapping preprocessed images to (content, degradation or None) embeddings.
        text_embed: (K, E) unit-norm class embeddings.
        class_names: the K class names.
        image_size: CLIP input size (shorter side resized to it, then centre crop).
        mean: CLIP normalisation mean.
        std: CLIP normalisation std.
        logit_scale: multiplier of the cosine similarities before the softmax (100 for pretrained CLIP).
        interpolation: ``bicubic`` or ``bilinear`` resize, as the architecture's own transform.
        source: how the prior was built (recorded in configs and results).
    """

    def __init__(self, encoder: nn.Module, text_embed: torch.Tensor, class_names: Sequence[str], *,
                 image_size: int, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD,
                 logit_scale: float = 100.0, interpolation: str = "bicubic", source: str = "") -> None:
        super().__init__()
        if text_embed.shape[0] != len(class_names):
            raise ValueError(f"{text_embed.shape[0]} text embeddings for {len(class_names)} class names")
        self.encoder = encoder
        self.register_buffer("text_embed", F.normalize(text_embed.float(), dim=-1))  # (K, E)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.class_names = list(class_names)
        self.num_classes = len(class_names)
        self.embed_dim = int(text_embed.shape[1])
        self.image_size = int(image_size)
        self.logit_scale = float(logit_scale)
        self.interpolation = interpolation
        self.source = source
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> DegradationPrior:
        """Ignore ``mode``: the prior is always in eval mode (frozen statistics, no dropout)."""
        return super().train(False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """CLIP's test transform on tensors: shorter side to ``image_size``, centre crop, normalise.

        Args:
            images: (B, 3, H, W) in [0, 1].

        Returns:
            (B, 3, S, S) normalised input.
        """
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        mode = InterpolationMode.BICUBIC if self.interpolation == "bicubic" else InterpolationMode.BILINEAR
        x = images.float()  # (B, 3, H, W)
        if min(x.shape[-2:]) != self.image_size:
            x = TF.resize(x, [self.image_size], interpolation=mode, antialias=True).clamp(0, 1)  # (B, 3, h, w)
        x = TF.center_crop(x, [self.image_size, self.image_size])  # (B, 3, S, S)
        return (x - self.mean.float()) / self.std.float()  # (B, 3, S, S)

    def logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Scaled cosine logits (B, K) and the unit-norm embeddings (no grad context applied here)."""
        dtype = next(self.encoder.parameters()).dtype  # the parent may have cast the prior (e.g. .half())
        content, degra = self.encoder(self.preprocess(images).to(dtype))  # (B, E), (B, E) or None
        content = F.normalize(content.float(), dim=-1)  # (B, E)
        degra = F.normalize(degra.float(), dim=-1) if degra is not None else None
        query = degra if degra is not None else content  # (B, E)
        return self.logit_scale * query @ self.text_embed.float().t(), content, degra  # (B, K)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> PriorOutput:
        """Degradation probabilities and embeddings of a batch.

        Args:
            images: (B, 3, H, W) in [0, 1], any size.

        Returns:
            ``PriorOutput`` with probs (B, K), image_embed (B, E), degra_embed (B, E) or None.
        """
        with torch.autocast(images.device.type, enabled=False):
            logits, content, degra = self.logits(images)
        return PriorOutput(probs=logits.softmax(dim=-1), image_embed=content, degra_embed=degra)

    def extra_repr(self) -> str:
        return f"source={self.source!r}, K={self.num_classes}, E={self.embed_dim}, image_size={self.image_size}"


# --------------------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------------------

def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``, failing with the fix when CUDA is asked for but not available."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{device}' requested but CUDA is not available on this machine (no GPU, or a "
                           "CPU-only torch build). Fix: pass --device cpu (device='cpu').")
    return dev


class PretrainedUnavailableError(RuntimeError):
    """Pretrained CLIP weights are neither cached nor allowed to be downloaded."""


def _cached_pretrained(cfg: dict[str, Any], cache_dir: str | None) -> str | None:
    """Path of already-downloaded weights for an open_clip pretrained config, without touching the network."""
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(cfg["hf_hub"])  # 'org/repo/' means the default file name
        filename = filename or "open_clip_pytorch_model.bin"
        names = [filename.rsplit(".", 1)[0] + ".safetensors", filename] if filename.endswith((".bin", ".pth")) \
            else [filename]
        for name in names:
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(found, str):
                return found
    if cfg.get("url"):
        file = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])
        if file.is_file():
            return str(file)
    return None


def resolve_pretrained(arch: str, tag: str, allow_download: bool | None = None, cache_dir: str | None = None) -> str:
    """Local file of open_clip pretrained weights; downloads only when allowed, else fails fast.

    Args:
        arch: open_clip architecture, e.g. ``ViT-B-32``.
        tag: pretrained tag, e.g. ``laion2b_s34b_b79k``.
        allow_download: None reads the environment variable ``M2RESTORE_ALLOW_DOWNLOAD`` (1/true).
        cache_dir: open_clip / Hugging Face cache folder (default: theirs).

    Returns:
        The path of the weights file.
    """
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        raise ValueError(f"open_clip has no pretrained tag '{tag}' for '{arch}'; "
                         f"available: {open_clip.list_pretrained_tags_by_model(arch)}")
    found = _cached_pretrained(cfg, cache_dir)
    if found:
        return found
    if allow_download is None:
        allow_download = os.environ.get(ALLOW_DOWNLOAD_ENV, "").lower() in ("1", "true", "yes")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if not allow_download or (offline and cfg.get("hf_hub")):
        where = (f"https://huggingface.co/{cfg['hf_hub'].rstrip('/')}" if cfg.get("hf_hub") else cfg.get("url"))
        raise PretrainedUnavailableError(
            f"CLIP weights '{arch}:{tag}' are not in the local cache and downloading is "
            f"{'blocked by HF_HUB_OFFLINE' if offline and allow_download else 'off'}. Either: (a) on a machine with "
            f"network, pass allow_download=True or set {ALLOW_DOWNLOAD_ENV}=1 (cached under "
            f"{cache_dir or '~/.cache/huggingface/hub'}); or (b) download the weights from {where} "
            f"(open_clip_pytorch_model.bin), copy the file here and use the source 'local:{arch}:/path/to/file'."
        )
    return open_clip.download_pretrained(cfg, cache_dir=cache_dir)


def prior_from_clip(model: nn.Module, cfg: dict[str, Any], class_prompts: list[ClassPrompts], *, source: str,
               mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD, interpolation: str = "bicubic",
               logit_scale: float | None = None) -> DegradationPrior:
    """Wrap a full open_clip CLIP: embed the class captions once, keep only the image tower."""
    from .tiny import tokenizer_for

    model = model.eval()
    with torch.no_grad():
        text_embed = encode_class_texts(model, tokenizer_for(cfg), class_prompts)  # (K, E)
        scale = float(model.logit_scale.exp().clamp(max=100)) if logit_scale is None else logit_scale
    return DegradationPrior(
        ClipImageEncoder(model.visual), text_embed, [c.name for c in class_prompts],
        image_size=int(cfg["vision_cfg"]["image_size"]), mean=mean, std=std, logit_scale=scale,
        interpolation=interpolation, source=source,
    )


def load_prior_checkpoint(path: str | Path, classes: str | Sequence[str] | None = None,
                          logit_scale: float | None = None) -> DegradationPrior:
    """A prior from a checkpoint written by ``m2restore clip train`` (classes default to its training classes)."""
    from .tiny import build_clip

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP prior checkpoint not found: {path}; train one with "
                                f"`m2restore clip train --data DATASET --out DIR` (writes DIR/prior.pt)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a prior checkpoint ({CHECKPOINT_FORMAT}); for plain open_clip weights use "
                         f"'local:ARCH:{path}', for DA-CLIP 'daclip:{path}'")
    model = build_clip(ckpt["model_cfg"])
    model.load_state_dict(ckpt["model"])
    if classes is None:
        prompts = [ClassPrompts(name, tuple(caps)) for name, caps in ckpt["classes"]]
    else:
        prompts = resolve_classes(classes)
    pre = ckpt["preprocess"]
    return prior_from_clip(model, ckpt["model_cfg"], prompts, source=f"tiny:{path}", mean=pre["mean"], std=pre["std"],
                      interpolation=pre["interpolation"], logit_scale=logit_scale)


def build_prior(
    source: str = "tiny",
    checkpoint: str | None = None,
    classes: str | Sequence[str] | None = None,
    *,
    allow_download: bool | None = None,
    cache_dir: str | None = None,
    templates: Sequence[str] | None = None,
    logit_scale: float | None = None,
    quick_gelu: bool = False,
    seed: int = 0,
) -> DegradationPrior:
    """Build a frozen degradation prior from a source string (see the module docstring).

    Args:
        source: ``tiny``, ``tiny:PATH``, ``openclip:ARCH:TAG``, ``local:ARCH:PATH`` or ``daclip:PATH``.
        checkpoint: a ``clip train`` checkpoint; same as ``source="tiny:PATH"``.
        classes: prompt-bank selection (``default`` K=13 when None; a trained checkpoint defaults to its own
            classes; DA-CLIP defaults to ``release6``).
        allow_download: allow downloading pretrained weights (None: env ``M2RESTORE_ALLOW_DOWNLOAD``).
        cache_dir: cache folder for pretrained weights.
        templates: caption templates overriding the bank's.
        logit_scale: cosine-similarity scale (default: the model's learned scale, at most 100).
        quick_gelu: QuickGELU activation for ``daclip``/``local`` sources whose weights were trained with it.
        seed: initialisation seed of the random ``tiny`` prior.

    Returns:
        The frozen ``DegradationPrior``.
    """
    from .tiny import TINY_CLIP, build_clip, model_config

    kind, _, rest = (f"tiny:{checkpoint}" if checkpoint else source).partition(":")
    if kind == "tiny" and rest:
        return load_prior_checkpoint(rest, classes, logit_scale)
    if kind == "tiny":
        cfg = model_config(TINY_CLIP)
        prompts = resolve_classes(classes, templates)
        return prior_from_clip(build_clip(cfg, seed=seed), cfg, prompts, source="tiny", logit_scale=logit_scale)
    if kind in ("openclip", "local"):
        arch, _, ref = rest.partition(":")
        if not arch or not ref:
            raise ValueError(f"source '{source}': expected '{kind}:ARCH:{'TAG' if kind == 'openclip' else 'PATH'}'")
        import open_clip

        pcfg = open_clip.get_pretrained_cfg(arch, ref) if kind == "openclip" else {}
        weights = resolve_pretrained(arch, ref, allow_download, cache_dir) if kind == "openclip" else ref
        if not Path(weights).is_file():
            raise FileNotFoundError(f"open_clip weights file not found: {weights} (source '{source}')")
        cfg = model_config(arch)
        model = open_clip.create_model(arch, pretrained=weights, force_quick_gelu=pcfg.get("quick_gelu", quick_gelu))
        return prior_from_clip(model, cfg, resolve_classes(classes, templates), source=source,
                          mean=pcfg.get("mean", CLIP_MEAN), std=pcfg.get("std", CLIP_STD),
                          interpolation=pcfg.get("interpolation", "bicubic"), logit_scale=logit_scale)
    if kind == "daclip":
        from .daclip import DAClipImageEncoder, load_daclip
        from .tiny import tokenizer_for

        daclip, cfg = load_daclip(rest, quick_gelu=quick_gelu)
        prompts = resolve_classes("release6" if classes is None else classes, templates)
        with torch.no_grad():
            text_embed = encode_class_texts(daclip.clip, tokenizer_for(cfg), prompts)  # (K, E)
        return DegradationPrior(
            DAClipImageEncoder(daclip), text_embed, [c.name for c in prompts],
            image_size=int(cfg["vision_cfg"]["image_size"]),
            logit_scale=100.0 if logit_scale is None else logit_scale, source=source,
        )
    raise ValueError(f"unknown prior source '{source}': use tiny, tiny:PATH, openclip:ARCH:TAG, local:ARCH:PATH "
                     f"or daclip:PATH")
