"""Restormer building blocks shared by PromptIR, AdaIR and M2Restore.

Zamir et al., "Restormer: Efficient Transformer for High-Resolution Image Restoration", CVPR 2022
(https://arxiv.org/abs/2111.09881; code: swz30/Restormer ``basicsr/models/archs/restormer_arch.py``).

Module tree of one U-Net level (names match the official code, so released checkpoints load)::

    TransformerBlock
    ├── norm1: LayerNorm          (per-pixel LayerNorm over channels; body.weight, body.bias)
    ├── attn:  Attention          (MDTA: qkv 1x1 -> qkv_dwconv 3x3 -> channel attention -> project_out)
    ├── norm2: LayerNorm
    └── ffn:   FeedForward        (GDFN: project_in 1x1 -> dwconv 3x3 -> GELU gate -> project_out)

plus ``OverlapPatchEmbed`` (3x3 conv stem), ``Downsample`` (conv C->C/2, PixelUnshuffle) and ``Upsample``
(conv C->2C, PixelShuffle). ``RestormerConfig`` holds the backbone hyper-parameters that every family shares.

Implementation notes (same math as the official code, cheaper layouts):
- LayerNorm runs ``F.layer_norm`` on a channels-last *view* instead of materialising ``b (h w) c`` copies. Its
  output is channels-last strided, which also lets the following 1x1 convolutions take oneDNN's fast path on CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..config import ConfigError

LayerNormType = Literal["WithBias", "BiasFree"]


# ---------------------------------------------------------------------------------------------------------------
# Configuration shared by every Restormer-based family
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class RestormerConfig:
    """Backbone hyper-parameters of a 4-level Restormer U-Net (defaults: the papers' models)."""

    inp_channels: int = 3  # input image channels
    out_channels: int = 3  # output image channels (the input is added back: global residual)
    dim: int = 48  # C, channels at level 1; levels 2-4 use 2C, 4C, 8C
    num_blocks: tuple[int, int, int, int] = (4, 6, 6, 8)  # L1..L4, Transformer blocks per level (L4 = bottleneck)
    num_refinement_blocks: int = 4  # L_r, blocks at full resolution after the decoder (2C channels)
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)  # attention heads per level
    ffn_expansion_factor: float = 2.66  # gamma, GDFN hidden width = int(gamma * C)
    bias: bool = False  # bias in the 1x1/3x3 convolutions of the blocks
    layernorm_type: LayerNormType = "WithBias"  # 'WithBias' (default) or 'BiasFree' LayerNorm
    # Mark parameters the forward never trains (the releases' unused layers, AdaIR's rate_conv under the official
    # hard mask) requires_grad=False. Training is the same either way (they never get a gradient); False keeps the
    # official classes' exact trainable counts, True makes "trainable" mean "learns" (the tiny presets use it).
    freeze_unused: bool = False

    def __post_init__(self) -> None:
        for level, heads in enumerate(self.heads):
            width = self.dim * 2**level
            if width % heads:
                raise ConfigError(f"{type(self).__name__}: level {level + 1} width {width} (dim * 2^{level}) is not "
                                  f"divisible by heads[{level}]={heads}; change dim or heads")

    @property
    def widths(self) -> tuple[int, int, int, int]:
        """Channels of the four encoder levels: (C, 2C, 4C, 8C)."""
        return tuple(self.dim * 2**i for i in range(4))  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------------------
# Layer normalisation over channels, per pixel
# ---------------------------------------------------------------------------------------------------------------
class BiasFreeLayerNorm(nn.Module):
    """x / sqrt(Var_c[x] + eps) * weight; takes and returns channels-last tensors (B, H, W, C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        var = x.var(-1, keepdim=True, unbiased=False)  # (B, H, W, 1)
        return x / torch.sqrt(var + 1e-5) * self.weight  # (B, H, W, C)


class WithBiasLayerNorm(nn.Module):
    """Standard LayerNorm over the last (channel) axis with weight and bias, eps 1e-5."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)  # (B, H, W, C)


class LayerNorm(nn.Module):
    """Normalise each pixel's channel vector of a (B, C, H, W) map (official: ``LayerNorm(dim, LayerNorm_type)``)."""

    def __init__(self, dim: int, layernorm_type: LayerNormType = "WithBias") -> None:
        super().__init__()
        self.body = BiasFreeLayerNorm(dim) if layernorm_type == "BiasFree" else WithBiasLayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(rearrange(x, "b c h w -> b h w c"))  # (B, H, W, C), a view: no copy
        return rearrange(y, "b h w c -> b c h w")  # (B, C, H, W), channels-last strides


# ---------------------------------------------------------------------------------------------------------------
# Multi-Dconv Head Transposed Attention (MDTA)
# ---------------------------------------------------------------------------------------------------------------
def channel_attention(q: Tensor, k: Tensor, v: Tensor, temperature: Tensor, num_heads: int) -> Tensor:
    """Attention across channels: per head a (C/h x C/h) map from L2-normalised q, k over all pixels.

    Args:
        q: queries (B, C, H, W).
        k: keys (B, C, H, W).
        v: values (B, C, H, W).
        temperature: learned per-head scale (heads, 1, 1).
        num_heads: h.

    Returns:
        (B, C, H, W) attended values.
    """
    h, w = q.shape[-2:]
    q, k, v = (rearrange(t, "b (head c) h w -> b head c (h w)", head=num_heads) for t in (q, k, v))  # (B, h, C/h, HW)
    q = F.normalize(q, dim=-1)
    k = F.normalize(k, dim=-1)
    attn = (q @ k.transpose(-2, -1)) * temperature  # (B, h, C/h, C/h)
    attn = attn.softmax(dim=-1)
    out = attn @ v  # (B, h, C/h, HW)
    return rearrange(out, "b head c (h w) -> b (head c) h w", h=h, w=w)  # (B, C, H, W)


class Attention(nn.Module):
    """MDTA: self-attention over channels with depthwise-conv-enriched q, k, v (Restormer Sec. 3.1)."""

    def __init__(self, dim: int, num_heads: int, bias: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))  # learned scale alpha per head
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)  # 3 x (B, C, H, W)
        return self.project_out(channel_attention(q, k, v, self.temperature, self.num_heads))  # (B, C, H, W)


# ---------------------------------------------------------------------------------------------------------------
# Gated-Dconv Feed-Forward Network (GDFN)
# ---------------------------------------------------------------------------------------------------------------
class FeedForward(nn.Module):
    """GDFN: two parallel 1x1 + depthwise 3x3 paths, one through GELU gating the other (Restormer Sec. 3.2)."""

    def __init__(self, dim: int, ffn_expansion_factor: float = 2.66, bias: bool = False) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)  # 2 x (B, hidden, H, W)
        return self.project_out(F.gelu(x1) * x2)  # (B, C, H, W)


# ---------------------------------------------------------------------------------------------------------------
# Transformer block, patch embedding, resampling
# ---------------------------------------------------------------------------------------------------------------
class TransformerBlock(nn.Module):
    """Pre-norm residual block: x + MDTA(LN(x)), then x + GDFN(LN(x))."""

    def __init__(
        self, dim: int, num_heads: int, ffn_expansion_factor: float = 2.66, bias: bool = False,
        layernorm_type: LayerNormType = "WithBias",
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, layernorm_type)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, layernorm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))  # (B, C, H, W)
        return x + self.ffn(self.norm2(x))  # (B, C, H, W)


def transformer_stack(cfg: RestormerConfig, dim: int, num_heads: int, depth: int) -> nn.Sequential:
    """``depth`` TransformerBlocks of width ``dim`` with the backbone settings of ``cfg`` (a U-Net level)."""
    return nn.Sequential(*[
        TransformerBlock(dim, num_heads, cfg.ffn_expansion_factor, cfg.bias, cfg.layernorm_type) for _ in range(depth)
    ])


class OverlapPatchEmbed(nn.Module):
    """3x3 convolution stem: image (B, in_c, H, W) -> features (B, embed_dim, H, W)."""

    def __init__(self, in_c: int = 3, embed_dim: int = 48, bias: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, kernel_size=3, padding=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)  # (B, embed_dim, H, W)


class Downsample(nn.Module):
    """Halve the resolution, double the channels: conv C -> C/2, PixelUnshuffle(2) -> 2C."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat // 2, kernel_size=3, padding=1, bias=False), nn.PixelUnshuffle(2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)  # (B, 2C, H/2, W/2)


class Upsample(nn.Module):
    """Double the resolution, halve the channels: conv C -> 2C, PixelShuffle(2) -> C/2."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat * 2, kernel_size=3, padding=1, bias=False), nn.PixelShuffle(2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)  # (B, C/2, 2H, 2W)
