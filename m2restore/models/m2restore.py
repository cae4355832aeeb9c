"""M2Restore: CLIP-guided mixture of experts and Mamba-CNN fusion for all-in-one image restoration.

Wang, Li, Zheng, Zhang, Wei, "M2Restore: Mixture-of-Experts-based Mamba-CNN Fusion Framework for All-in-One Image
Restoration", IEEE TIP 2025 (https://arxiv.org/abs/2506.07814; code: yz-wang/M2Restore ``net/M2Restore.py``,
``net/MOE_CLIPbias.py``, the source of every layer name here).

Module tree (``m2restore_official`` = the released network: 46,830,041 trainable parameters without CLIP; 43,098 of
them, in AdaIR's layers, never receive a gradient in the release: ``freeze_unused=True`` marks them frozen)::

    M2Restore
    ├── prior (hidden)                   frozen CLIP degradation prior: probabilities p (B, K), embeddings (B, E)
    ├── task_prompt                      TaskPromptGenerator: per-image prompt from learned atoms
    ├── patch_embed                      3x3 conv 3 -> C
    ├── mcdb1 -> encoder_level1          DDER (CLIP-guided MoE, residual) then Transformer blocks, level 1 (C)
    ├── down1_2, mcdb2 -> encoder_level2                                                     level 2 (2C)
    ├── down2_3, mcdb3 -> encoder_level3                                                     level 3 (4C)
    ├── down3_4, latent                  MB blocks: dual-stream Mamba || CNN with a dynamic gate, level 4 (8C)
    ├── fre1, up4_3, reduce_chan_level3, decoder_level3      AdaIR's frequency modules (fed the input image)
    ├── fre2, up3_2, reduce_chan_level2, decoder_level2
    ├── fre3, up2_1, decoder_level1, refinement              2C channels
    └── output                                               3x3 conv 2C -> 3, plus the input image

Release vs paper (DESIGN.md §4): ``m2restore_official`` keeps the release's semantics (noisy top-2 of 6,
log-sum-exp combine, additive CLIP bias, ``learned`` gate fed CLIP's content embedding, raster scan).
``m2restore`` follows the paper: an edge-aware gate (Sobel edges + degradation embedding, DWConv-GELU-DWConv-
Sigmoid, G weights the local stream) and our Bayesian cross-modal calibration of router and prior.

Presets: ``m2restore`` (paper design, tiny random CLIP prior unless ``prior_checkpoint`` names a trained one),
``m2restore_official`` (release; its prior defaults to ``uniform``, an information-free stand-in with the release's
widths K=6, E=512 - pass ``prior="daclip:PATH"`` for DA-CLIP), and ``*_tiny`` versions (dim 16, blocks 1/2/2/2, one
refinement block, smaller prompt) that train on a CPU.

With released weights and a DA-CLIP prior, outputs still differ from the release's by design: our prior feeds CLIP
normalised pixels (the release forgot CLIP's mean/std) and returns unit-norm embeddings (the release passed the raw
image features to the gate's ``prompt_proj``).

The CLIP prior is frozen and deliberately kept *outside* the module tree: ``parameters()`` (the optimizer) and
``state_dict()`` (checkpoints, the official key list) never contain it; it is rebuilt from its own source
(config ``prior``/``prior_checkpoint``), moves with ``.to()`` and always runs in eval mode without autograd.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ..config import ConfigError
from ..registry import register_preset
from .adair import FreModule, MaskRadiusMode
from .base import RestorationOutput, pad_to_multiple
from .mamba_cnn import GateType, MBBlock, ScanOrder, edge_map
from .moe import Calibration, Combine, DDERBlock, RoutingStats, TaskPromptGenerator
from .restormer_blocks import Downsample, OverlapPatchEmbed, RestormerConfig, Upsample, transformer_stack


# ----------------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class M2RestoreConfig(RestormerConfig):
    """M2Restore hyper-parameters; backbone fields from :class:`RestormerConfig` (num_blocks[3] = MB blocks).

    Defaults are the paper's design (preset ``m2restore``); ``m2restore_official`` sets the release's choices.
    """

    decoder: bool = True  # AdaIR's frequency modules fre1..fre3 in the decoder (the release keeps them)
    mask_radius_mode: MaskRadiusMode = "relative"  # AdaIR's low-frequency box; "official" is empty below 1024 px
    unused_layers: bool = False  # keep the release's unused FreModule.conv / score_gen for strict loading
    # -- task prompt (release: Taskprompt) ------------------------------------------------------------------------
    use_task_prompt: bool = True  # ablation: False -> the router sees pixel features only (no prompt, no fc)
    atom_num: int = 32  # atoms in the prompt dictionary
    atom_dim: int = 256  # prompt width before each layer's fc (-> C)
    prompt_hidden: int = 64  # width of the prompt's conv net
    # -- DDER: CLIP-guided MoE before each encoder level (release: MCDB) -------------------------------------------
    use_moe: bool = True  # ablation: False -> no routing layers (and no task prompt, which only feeds them)
    num_experts: int = 6  # E, pixel-wise MLP experts per layer
    top_k: int = 2  # k, experts per token
    moe_combine: Combine = "logsumexp"  # release: log sum g exp(y); "linear": sum g y
    calibration: Calibration = "bayes"  # how the prior biases the router: "release" additive, "bayes" ours
    noisy_gating: bool = True  # Shazeer's learned noise on the logits in training
    load_with_prior: bool = True  # smooth load from the biased logits (the release uses the unbiased ones)
    router_init: Literal["randn", "scaled"] = "scaled"  # release: N(0, 1) router weights
    balance_weight: float = 0.01  # lambda, total loss = L1 + lambda * sum of per-layer cv^2(importance)+cv^2(load)
    # -- bottleneck: dual-stream MB blocks -------------------------------------------------------------------------
    use_mamba: bool = True  # ablation: False -> CNN stream only
    use_cnn: bool = True  # ablation: False -> Mamba stream only
    gate: GateType = "edge"  # DGF: "edge" (paper), "learned" (release), "fixed" 0.5
    gate_embedding: Literal["image", "degradation"] = "degradation"  # which CLIP embedding drives the gate
    scan: ScanOrder = "raster"  # Mamba token order: "raster" (release), "bidirectional", "four"
    d_state: int = 16  # N, SSM state size
    d_conv: int = 4  # Mamba's causal conv width
    expand: int = 2  # Mamba inner width = expand * 8C
    # -- CLIP degradation prior (frozen, not in the state dict) ----------------------------------------------------
    use_clip_prior: bool = True  # ablation: False -> no router bias, gate without CLIP embedding
    prior: str = "tiny"  # m2restore.clip.build_prior source ("tiny", "daclip:PATH", ...) or "uniform" (no info)
    prior_checkpoint: str | None = None  # a trained prior (``m2restore clip train``); overrides ``prior``
    prior_classes: str | None = None  # prompt-bank class selection; None: the source's default
    uniform_embed_dim: int = 512  # embedding width of the "uniform" prior (real priors bring their own)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.use_mamba or self.use_cnn):
            raise ConfigError("M2RestoreConfig: use_mamba and use_cnn cannot both be False")
        if not 1 <= self.top_k <= self.num_experts:
            raise ConfigError(f"M2RestoreConfig: top_k={self.top_k} must be in [1, num_experts={self.num_experts}]")
        if self.decoder and self.widths[1] % self.heads[2]:
            raise ConfigError(f"M2RestoreConfig: fre3 width {self.widths[1]} is not divisible by heads[2]")


# ----------------------------------------------------------------------------------------------------------------
# The degradation prior interface
# ----------------------------------------------------------------------------------------------------------------
class PriorFeatures(Protocol):
    """What the network reads from a prior's output (``m2restore.clip.PriorOutput`` satisfies it)."""

    probs: Tensor  # (B, K) class probabilities
    image_embed: Tensor  # (B, E) content embedding
    degra_embed: Tensor | None  # (B, E) degradation embedding, or None


@runtime_checkable
class PriorLike(Protocol):
    """A frozen degradation prior: ``prior(images in [0, 1]) -> PriorFeatures`` plus its widths and class names."""

    num_classes: int
    embed_dim: int
    class_names: list[str]

    def __call__(self, images: Tensor) -> PriorFeatures: ...


class UniformPrior(nn.Module):
    """A prior without information: uniform probabilities and a zero embedding (shapes, tests, cost baselines)."""

    def __init__(self, class_names: list[str], embed_dim: int) -> None:
        super().__init__()
        self.class_names, self.num_classes, self.embed_dim = list(class_names), len(class_names), embed_dim
        self.register_buffer("anchor", torch.zeros(()), persistent=False)  # follows .to(device, dtype)

    def forward(self, images: Tensor) -> PriorFeatures:
        from ..clip.prior import PriorOutput

        b = images.shape[0]
        probs = self.anchor.new_full((b, self.num_classes), 1.0 / self.num_classes)  # (B, K)
        return PriorOutput(probs=probs, image_embed=self.anchor.new_zeros(b, self.embed_dim))  # (B, E)


def make_prior(cfg: M2RestoreConfig) -> nn.Module:
    """Build the frozen prior that ``cfg`` names (``uniform`` here, every other source via m2restore.clip)."""
    if cfg.prior == "uniform" and cfg.prior_checkpoint is None:
        from ..clip.prompts import resolve_classes

        names = [c.name for c in resolve_classes(cfg.prior_classes or "release6")]
        prior = UniformPrior(names, cfg.uniform_embed_dim)
    else:
        from ..clip.prior import build_prior

        prior = build_prior(cfg.prior, checkpoint=cfg.prior_checkpoint, classes=cfg.prior_classes)
    return prior


# ----------------------------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------------------------
class M2Restore(nn.Module):
    """M2Restore network; see the module docstring for the tree and :class:`M2RestoreConfig` for the switches."""

    pad_multiple = 8  # three 2x downsamplings

    def __init__(self, config: M2RestoreConfig, prior: nn.Module | None = None) -> None:
        """Build from ``config``; ``prior`` (optional) replaces the one the config names, e.g. a shared instance."""
        super().__init__()
        c = self.config = config
        if c.use_clip_prior:
            prior = prior if prior is not None else make_prior(c)
            if not isinstance(prior, PriorLike):
                raise TypeError(f"m2restore.py: prior {type(prior).__name__} lacks num_classes/embed_dim/class_names "
                                f"(see PriorLike)")
            prior.requires_grad_(False).eval()
        else:
            prior = None
        object.__setattr__(self, "_prior", prior)  # not a submodule: out of parameters() and state_dict()
        k = prior.num_classes if prior is not None else 0
        e = prior.embed_dim if prior is not None else 0
        w = c.widths

        self.patch_embed = OverlapPatchEmbed(c.inp_channels, c.dim, c.bias)
        if c.decoder:  # every AdaIR frequency module uses heads[2]
            fre = {"num_heads": c.heads[2], "bias": c.bias, "in_dim": c.inp_channels,
                   "mask_radius_mode": c.mask_radius_mode, "unused_layers": c.unused_layers,
                   "freeze_unused": c.freeze_unused}
            self.fre1, self.fre2, self.fre3 = (FreModule(w[i], **fre) for i in (3, 2, 1))
        self.encoder_level1 = transformer_stack(c, w[0], c.heads[0], c.num_blocks[0])
        self.down1_2 = Downsample(w[0])
        self.encoder_level2 = transformer_stack(c, w[1], c.heads[1], c.num_blocks[1])
        self.down2_3 = Downsample(w[1])
        self.encoder_level3 = transformer_stack(c, w[2], c.heads[2], c.num_blocks[2])
        self.down3_4 = Downsample(w[2])
        self.latent = nn.ModuleList([
            MBBlock(
                w[3], c.ffn_expansion_factor, c.bias, c.layernorm_type, embed_dim=e, gate=c.gate, scan=c.scan,
                use_mamba=c.use_mamba, use_cnn=c.use_cnn, d_state=c.d_state, d_conv=c.d_conv, expand=c.expand,
            )
            for _ in range(c.num_blocks[3])
        ])
        self.up4_3 = Upsample(w[3])
        self.reduce_chan_level3 = nn.Conv2d(w[3], w[2], kernel_size=1, bias=c.bias)
        self.decoder_level3 = transformer_stack(c, w[2], c.heads[2], c.num_blocks[2])
        self.up3_2 = Upsample(w[2])
        self.reduce_chan_level2 = nn.Conv2d(w[2], w[1], kernel_size=1, bias=c.bias)
        self.decoder_level2 = transformer_stack(c, w[1], c.heads[1], c.num_blocks[1])
        self.up2_1 = Upsample(w[1])
        self.decoder_level1 = transformer_stack(c, w[1], c.heads[0], c.num_blocks[0])
        self.refinement = transformer_stack(c, w[1], c.heads[0], c.num_refinement_blocks)
        self.output = nn.Conv2d(w[1], c.out_channels, kernel_size=3, padding=1, bias=c.bias)

        self.task_prompt = None
        self.mcdb1 = self.mcdb2 = self.mcdb3 = None
        if c.use_moe:
            if c.use_task_prompt:
                self.task_prompt = TaskPromptGenerator(c.inp_channels, c.atom_num, c.atom_dim, c.prompt_hidden)
            moe = {
                "num_experts": c.num_experts, "top_k": c.top_k, "mlp_ratio": c.ffn_expansion_factor, "num_classes": k,
                "calibration": c.calibration, "combine": c.moe_combine, "noisy_gating": c.noisy_gating,
                "load_with_prior": c.load_with_prior, "router_init": c.router_init,
            }
            atom = c.atom_dim if c.use_task_prompt else 0
            self.mcdb1, self.mcdb2, self.mcdb3 = (DDERBlock(w[i], atom, **moe) for i in range(3))
        self.register_load_state_dict_pre_hook(_skip_release_clip_weights)

    # -- the frozen prior, outside the module tree ----------------------------------------------------------------
    @property
    def prior(self) -> nn.Module | None:
        """The frozen CLIP degradation prior (None with ``use_clip_prior=False``)."""
        return self._prior

    def _apply(self, fn: Any, recurse: bool = True) -> M2Restore:
        super()._apply(fn, recurse)
        if self._prior is not None:
            self._prior._apply(fn)  # .to(), .cuda(), .half() also move the hidden prior
        return self

    def run_prior(self, images: Tensor) -> PriorFeatures | None:
        """The prior's features of ``images`` (B, 3, H, W) in [0, 1], without autograd (None without a prior)."""
        if self._prior is None:
            return None
        self._prior.eval()
        with torch.no_grad():
            return self._prior(images)

    # -- forward ---------------------------------------------------------------------------------------------------
    def forward(
        self, x: Tensor, return_aux: bool = False, return_maps: bool = False
    ) -> Tensor | RestorationOutput:
        """Restore images ``x`` (B, 3, H, W) in [0, 1] of any size.

        Args:
            x: degraded images.
            return_aux: return a :class:`RestorationOutput` with ``aux_losses={"balance": lambda * sum cv^2}`` and
                ``extras`` = {"routing": {layer: RoutingStats}, "prior_probs": (B, K), "class_names": [...]}.
            return_maps: also put the bottleneck's local-stream weight maps (``extras["gate_maps"]``: one
                (B, 1, H/8, W/8) per MB block) and the edge map (``extras["edge_map"]``) in ``extras``.

        Returns:
            The restored images (B, 3, H, W), or a RestorationOutput when ``return_aux`` or ``return_maps``.
        """
        c = self.config
        want = return_aux or return_maps
        h, w = x.shape[-2:]
        img, _ = pad_to_multiple(x, self.pad_multiple)  # (B, 3, H', W')
        feats = self.run_prior(x)
        probs = feats.probs.float() if feats is not None else None  # (B, K)
        names = tuple(self._prior.class_names) if self._prior is not None else ()
        prompt = self.task_prompt(img) if self.task_prompt is not None else None  # (B, atom_dim)

        balance, routing = img.new_zeros(()), {}
        skips = []
        x_l = self.patch_embed(img)  # (B, C, H', W')
        stages = ((self.mcdb1, self.encoder_level1, self.down1_2), (self.mcdb2, self.encoder_level2, self.down2_3),
                  (self.mcdb3, self.encoder_level3, self.down3_4))
        for i, (mcdb, encoder, down) in enumerate(stages, start=1):
            if mcdb is not None:
                x_l, bal, stats = mcdb(x_l, prompt, probs, names, with_stats=want)  # (B, C_i, H_i, W_i)
                balance, routing[f"mcdb{i}"] = balance + bal, stats
            skips.append(encoder(x_l))
            x_l = down(skips[-1])  # (B, C_{i+1}, H_i/2, W_i/2)

        embedding = self._gate_embedding(feats)  # (B, E) or None
        edges = edge_map(img, x_l.shape[-2:]) if c.gate == "edge" and c.use_mamba and c.use_cnn else None
        gate_maps = []
        for block in self.latent:
            x_l, local_weight = block(x_l, embedding, edges)  # (B, 8C, H'/8, W'/8)
            gate_maps.append(local_weight)

        x_l = self.fre1(img, x_l) if c.decoder else x_l
        x_l = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(x_l), skips[2]], 1)))  # (B, 4C, ..)
        x_l = self.fre2(img, x_l) if c.decoder else x_l
        x_l = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(x_l), skips[1]], 1)))  # (B, 2C, ..)
        x_l = self.fre3(img, x_l) if c.decoder else x_l
        x_l = self.decoder_level1(torch.cat([self.up2_1(x_l), skips[0]], 1))  # (B, 2C, H', W')
        out = (self.output(self.refinement(x_l)) + img)[..., :h, :w]  # (B, 3, H, W)

        if not want:
            return out
        aux = {"balance": c.balance_weight * balance} if routing else {}
        extras: dict[str, Any] = {"routing": routing, "class_names": list(names)}
        if probs is not None:
            extras["prior_probs"] = probs.detach()
        if return_maps:
            extras["gate_maps"] = [m for m in gate_maps if m is not None]
            extras["edge_map"] = edges
        return RestorationOutput(out, aux, extras)

    def _gate_embedding(self, feats: PriorFeatures | None) -> Tensor | None:
        """CLIP embedding for the bottleneck gate: degradation embedding if asked for and offered, else content."""
        if feats is None:
            return None
        if self.config.gate_embedding == "degradation" and feats.degra_embed is not None:
            return feats.degra_embed.float()  # (B, E)
        return feats.image_embed.float()  # (B, E)


def _skip_release_clip_weights(module: nn.Module, state: dict, prefix: str, *args: Any) -> None:
    """Drop the release's frozen DA-CLIP weights (``daclip.*``) on load: the prior is rebuilt from its own source."""
    for key in [k for k in state if k.startswith(prefix + "daclip.")]:
        del state[key]


def routing_summary(routing: dict[str, RoutingStats]) -> dict[str, list[float]]:
    """Per-layer expert load fractions of ``extras["routing"]`` as plain lists (for logs and JSON records)."""
    return {name: stats.load().tolist() for name, stats in routing.items()}


def split_release_state_dict(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Split a release checkpoint's weights into (network, DA-CLIP) parts.

    Accepts the Lightning checkpoint's ``state_dict`` (keys prefixed ``net.``) or a bare one. The network part
    loads into ``m2restore_official`` with ``strict=True`` (``load_state_dict`` also skips ``daclip.*`` keys by
    itself); the DA-CLIP part (prefix removed) is the frozen DA-CLIP the release kept inside its model: saved to a
    file it can serve as the prior (``prior="daclip:FILE"``).
    """
    state = state.get("state_dict", state)
    net, clip = {}, {}
    for key, value in state.items():
        key = key.removeprefix("net.")
        if key.startswith("daclip."):
            clip[key.removeprefix("daclip.")] = value
        elif not key.startswith("loss_fn."):
            net[key] = value
    return net, clip


# ----------------------------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------------------------
_RELEASE = {  # the release's semantics where our defaults (the paper's design) differ
    "mask_radius_mode": "official", "calibration": "release", "moe_combine": "logsumexp", "load_with_prior": False,
    "router_init": "randn", "gate": "learned", "gate_embedding": "image", "scan": "raster",
}
_TINY = {"dim": 16, "num_blocks": (1, 2, 2, 2), "num_refinement_blocks": 1, "atom_num": 16, "atom_dim": 64,
         "prompt_hidden": 16, "freeze_unused": True}

register_preset(
    "m2restore", M2Restore, M2RestoreConfig, family="m2restore",
    description="M2Restore as the paper describes it: edge-aware gate, Bayesian CLIP calibration",
)
register_preset(
    "m2restore_official", M2Restore, M2RestoreConfig, family="m2restore",
    description="the released network (yz-wang/M2Restore), 46,830,041 params without CLIP",
    prior="uniform", prior_classes="release6", unused_layers=True, **_RELEASE,
)
register_preset(
    "m2restore_tiny", M2Restore, M2RestoreConfig, family="m2restore",
    description="paper design at CPU size (dim 16, blocks 1/2/2/2) for tests and CPU training", **_TINY,
)
register_preset(
    "m2restore_official_tiny", M2Restore, M2RestoreConfig, family="m2restore",
    description="release semantics at CPU size (dim 16, blocks 1/2/2/2)", prior_classes="release6",
    **_RELEASE, **_TINY,
)
