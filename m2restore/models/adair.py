"""AdaIR: a Restormer U-Net whose decoder mines and modulates frequency information of the input.

Cui, Zamir, Khan, Knoll, Shah, Khan, "AdaIR: Adaptive All-in-One Image Restoration via Frequency Mining and
Modulation", ICLR 2025 (https://arxiv.org/abs/2403.14614; code: c-yn/AdaIR ``net/model.py``, the source of every
layer name here).

Module tree (default preset = the released model, 28,784,824 parameters)::

    AdaIR
    ├── patch_embed, encoder_level1..3, down*, latent     the Restormer encoder (C, 2C, 4C, 8C)
    ├── fre1 (8C) after the bottleneck, fre2 (4C) after decoder_level3, fre3 (2C) after decoder_level2
    │   FreModule  = AFLB, adaptive frequency learning block, fed the input image and the decoder features
    │   ├── conv1, rate_conv            image -> features; predicted low-frequency mask radius
    │   ├── channel_cross_l / _h        ChannelCrossAttention: high / low band (query) x features (key, value)
    │   ├── frequency_refine            FreRefine = FMoM: SpatialGate (H-L unit), ChannelGate (L-H unit), proj
    │   ├── channel_cross_agg           features (query) x refined bands, then out * para1 + features * para2
    │   └── conv, score_gen             in the release but unused by its forward
    ├── up4_3, reduce_chan_level3, decoder_level3, up3_2, reduce_chan_level2, decoder_level2, up2_1
    └── decoder_level1, refinement (2C), output                3x3 conv 2C -> 3, plus the input image

The frequency split. ``conv1`` maps the (resized) image to features, their 2-D FFT is cut by a centred box
around DC: inside = low band, outside = high band, each brought back by an inverse FFT (magnitude). The box's
half-size is predicted per image by ``rate_conv`` as t = sigmoid(.) in (0, 1) for height and width:

- ``mask_radius_mode='official'`` (default, as released): half-size ``int((H // 128) * t)`` bins, empty whenever
  that is 0, i.e. (t < 1) for every feature map under 256 px: always in training (patch 128 gives maps of 64, 32,
  16 px) and at test time unless the input is at least 512 px (fre3 runs at H/2). An empty box makes the low band
  zero and the high band the whole signal. The hard box passes no gradient, so ``rate_conv`` never learns in the
  release (``freeze_unused=True`` marks it frozen in this mode; training is unchanged).
- ``mask_radius_mode='relative'`` (our correction): half-size ``t * H / 2`` bins with a soft edge,
  ``sigmoid(radius - |offset|)`` per axis, so the split exists at every size and ``rate_conv`` learns.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import register_preset
from .base import RestorationOutput, pad_to_multiple
from .restormer_blocks import (
    Downsample,
    OverlapPatchEmbed,
    RestormerConfig,
    Upsample,
    channel_attention,
    transformer_stack,
)

MaskRadiusMode = Literal["official", "relative"]


@dataclass
class AdaIRConfig(RestormerConfig):
    """AdaIR hyper-parameters; backbone fields from :class:`RestormerConfig`, defaults = the release."""

    decoder: bool = True  # insert the frequency modules fre1..3 (False = plain Restormer, the papers' ablation)
    mask_radius_mode: MaskRadiusMode = "official"  # low-frequency box: 'official' int((H//128)*t), 'relative' t*H/2
    unused_layers: bool = True  # keep the release's unused FreModule.conv / score_gen for strict loading


# ---------------------------------------------------------------------------------------------------------------
# Channel-wise cross attention (CA)
# ---------------------------------------------------------------------------------------------------------------
class ChannelCrossAttention(nn.Module):
    """MDTA with queries from ``x`` and keys/values from ``y`` (official class: ``Chanel_Cross_Attention``)."""

    def __init__(self, dim: int, num_head: int, bias: bool = False) -> None:
        super().__init__()
        self.num_head = num_head
        self.temperature = nn.Parameter(torch.ones(num_head, 1, 1))
        self.q = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.q_dwconv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim, bias=bias)
        self.kv = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=bias)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, kernel_size=3, padding=1, groups=dim * 2, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape:
            raise ValueError(f"ChannelCrossAttention: query {tuple(x.shape)} and key/value {tuple(y.shape)} differ")
        q = self.q_dwconv(self.q(x))  # (B, C, H, W)
        k, v = self.kv_dwconv(self.kv(y)).chunk(2, dim=1)  # 2 x (B, C, H, W)
        return self.project_out(channel_attention(q, k, v, self.temperature, self.num_head))  # (B, C, H, W)


# ---------------------------------------------------------------------------------------------------------------
# Frequency modulation module (FMoM): H-L unit, L-H unit
# ---------------------------------------------------------------------------------------------------------------
class SpatialGate(nn.Module):
    """H-L unit: a spatial weight map from the channel max and mean of the high band (7x7 conv, sigmoid)."""

    def __init__(self) -> None:
        super().__init__()
        self.spatial = nn.Conv2d(2, 1, kernel_size=7, padding=3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], dim=1)  # (B, 2, H, W)
        return torch.sigmoid(self.spatial(pooled))  # (B, 1, H, W)


class ChannelGate(nn.Module):
    """L-H unit: channel weights from the global average and max of the low band through a shared MLP (r=16)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, dim // 16, 1, bias=False), nn.ReLU(), nn.Conv2d(dim // 16, dim, 1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        avg = self.mlp(x.mean((-2, -1), keepdim=True))  # (B, C, 1, 1)
        peak = self.mlp(x.amax((-2, -1), keepdim=True))  # (B, C, 1, 1)
        return torch.sigmoid(avg + peak)  # (B, C, 1, 1)


class FreRefine(nn.Module):
    """FMoM: the high band gates the low band spatially, the low band gates the high band per channel; 1x1 proj."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.SpatialGate = SpatialGate()
        self.ChannelGate = ChannelGate(dim)
        self.proj = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        spatial_weight = self.SpatialGate(high)  # (B, 1, H, W)
        channel_weight = self.ChannelGate(low)  # (B, C, 1, 1)
        return self.proj(low * spatial_weight + high * channel_weight)  # (B, C, H, W)


# ---------------------------------------------------------------------------------------------------------------
# Adaptive frequency learning block (AFLB)
# ---------------------------------------------------------------------------------------------------------------
def _offsets(n: int, device: torch.device) -> Tensor:
    """Signed distance of each FFT bin from DC in ``fftshift`` order, for bins in unshifted order: (n,)."""
    return (torch.arange(n, device=device) + n // 2) % n - n // 2


class FreModule(nn.Module):
    """AFLB: split an image-derived feature map into low/high frequency bands and inject them into ``y``.

    Args:
        dim: channels of the decoder features ``y``.
        num_heads: heads of the three channel cross-attentions.
        bias: bias of the attention convolutions.
        in_dim: channels of the image ``x``.
        mask_radius_mode: 'official' or 'relative' low-frequency box (see the module docstring).
        unused_layers: create the release's unused ``conv`` and ``score_gen`` so checkpoints load.
        freeze_unused: set ``requires_grad=False`` on the layers that never receive a gradient.
    """

    def __init__(
        self, dim: int, num_heads: int, bias: bool = False, in_dim: int = 3,
        mask_radius_mode: MaskRadiusMode = "official", unused_layers: bool = True, freeze_unused: bool = False,
    ) -> None:
        super().__init__()
        if mask_radius_mode not in ("official", "relative"):
            raise ValueError(f"FreModule: mask_radius_mode must be 'official' or 'relative', got {mask_radius_mode!r}")
        self.mask_radius_mode = mask_radius_mode
        if unused_layers:
            self.conv = nn.Conv2d(in_dim, dim, kernel_size=3, padding=1, bias=False).requires_grad_(not freeze_unused)
            self.score_gen = nn.Conv2d(2, 2, 7, padding=3).requires_grad_(not freeze_unused)
        self.conv1 = nn.Conv2d(in_dim, dim, kernel_size=3, padding=1, bias=False)
        self.para1 = nn.Parameter(torch.zeros(dim, 1, 1))  # weight of the frequency path (starts closed)
        self.para2 = nn.Parameter(torch.ones(dim, 1, 1))  # weight of the identity path
        self.channel_cross_l = ChannelCrossAttention(dim, num_heads, bias)
        self.channel_cross_h = ChannelCrossAttention(dim, num_heads, bias)
        self.channel_cross_agg = ChannelCrossAttention(dim, num_heads, bias)
        self.frequency_refine = FreRefine(dim)
        self.rate_conv = nn.Sequential(
            nn.Conv2d(dim, dim // 8, 1, bias=False), nn.GELU(), nn.Conv2d(dim // 8, 2, 1, bias=False),
        )
        if mask_radius_mode == "official" and freeze_unused:  # the hard mask passes no gradient to rate_conv
            self.rate_conv.requires_grad_(False)

    def low_pass_mask(self, feat: Tensor) -> Tensor:
        """Per-image low-frequency mask in unshifted FFT order, (B, 1, H, W), from the pooled features (B, C, H, W)."""
        h, w = feat.shape[-2:]
        t = self.rate_conv(feat.mean((-2, -1), keepdim=True)).sigmoid()  # (B, 2, 1, 1): height, width fractions
        dh, dw = _offsets(h, feat.device), _offsets(w, feat.device)  # (H,), (W,)
        if self.mask_radius_mode == "official":
            rh = (h // 128 * t[:, 0, 0, 0]).int()[:, None]  # (B, 1) half-size in bins
            rw = (w // 128 * t[:, 1, 0, 0]).int()[:, None]  # (B, 1)
            mh = ((dh >= -rh) & (dh < rh)).to(feat.dtype)  # (B, H): rows h//2-r .. h//2+r-1 after the shift
            mw = ((dw >= -rw) & (dw < rw)).to(feat.dtype)  # (B, W)
        else:
            mh = torch.sigmoid(t[:, 0, 0, :] * (h / 2) - dh.abs())  # (B, H), soft edge of one bin
            mw = torch.sigmoid(t[:, 1, 0, :] * (w / 2) - dw.abs())  # (B, W)
        return (mh[:, :, None] * mw[:, None, :])[:, None]  # (B, 1, H, W)

    def fft(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """High- and low-frequency magnitude maps (each (B, C, H, W)) of ``conv1(x)``."""
        feat = self.conv1(x)  # (B, C, H, W)
        mask = self.low_pass_mask(feat)  # (B, 1, H, W)
        spec = torch.fft.fft2(feat, norm="forward")  # (B, C, H, W) complex
        high = torch.fft.ifft2(spec * (1 - mask), norm="forward").abs()  # (B, C, H, W)
        low = torch.fft.ifft2(spec * mask, norm="forward").abs()  # (B, C, H, W)
        return high, low

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Modulate decoder features ``y`` (B, C, H, W) with the frequency bands of image ``x`` (B, in_dim, H', W')."""
        x = F.interpolate(x, y.shape[-2:], mode="bilinear")  # (B, in_dim, H, W)
        high, low = self.fft(x)  # 2 x (B, C, H, W)
        high = self.channel_cross_l(high, y)  # (B, C, H, W)
        low = self.channel_cross_h(low, y)  # (B, C, H, W)
        agg = self.frequency_refine(low, high)  # (B, C, H, W)
        return self.channel_cross_agg(y, agg) * self.para1 + y * self.para2  # (B, C, H, W)


# ---------------------------------------------------------------------------------------------------------------
# AdaIR
# ---------------------------------------------------------------------------------------------------------------
class AdaIR(nn.Module):
    """All-in-one restoration with frequency modules in the decoder; any input size (padded to a multiple of 8).

    Args:
        config: the hyper-parameters; ``AdaIRConfig()`` is the released model.
    """

    def __init__(self, config: AdaIRConfig | None = None) -> None:
        super().__init__()
        cfg = self.config = config or AdaIRConfig()
        c1, c2, c3, c4 = cfg.widths  # C, 2C, 4C, 8C
        heads, blocks = cfg.heads, cfg.num_blocks

        self.patch_embed = OverlapPatchEmbed(cfg.inp_channels, c1)
        if cfg.decoder:  # every frequency module uses heads[2], as released
            self.fre1, self.fre2, self.fre3 = (
                FreModule(width, heads[2], cfg.bias, cfg.inp_channels, cfg.mask_radius_mode, cfg.unused_layers,
                          cfg.freeze_unused)
                for width in (c4, c3, c2)
            )

        # encoder
        self.encoder_level1 = transformer_stack(cfg, c1, heads[0], blocks[0])
        self.down1_2 = Downsample(c1)
        self.encoder_level2 = transformer_stack(cfg, c2, heads[1], blocks[1])
        self.down2_3 = Downsample(c2)
        self.encoder_level3 = transformer_stack(cfg, c3, heads[2], blocks[2])
        self.down3_4 = Downsample(c3)
        self.latent = transformer_stack(cfg, c4, heads[3], blocks[3])

        # decoder
        self.up4_3 = Upsample(c4)
        self.reduce_chan_level3 = nn.Conv2d(c4, c3, kernel_size=1, bias=cfg.bias)
        self.decoder_level3 = transformer_stack(cfg, c3, heads[2], blocks[2])
        self.up3_2 = Upsample(c3)
        self.reduce_chan_level2 = nn.Conv2d(c3, c2, kernel_size=1, bias=cfg.bias)
        self.decoder_level2 = transformer_stack(cfg, c2, heads[1], blocks[1])
        self.up2_1 = Upsample(c2)
        self.decoder_level1 = transformer_stack(cfg, c2, heads[0], blocks[0])
        self.refinement = transformer_stack(cfg, c2, heads[0], cfg.num_refinement_blocks)
        self.output = nn.Conv2d(c2, cfg.out_channels, kernel_size=3, padding=1, bias=cfg.bias)

    def forward(self, x: Tensor, return_aux: bool = False) -> Tensor | RestorationOutput:
        """Restore ``x`` (B, 3, H, W) of any size; ``return_aux`` wraps the image in a RestorationOutput."""
        inp, (h, w) = pad_to_multiple(x, 8)  # (B, 3, H8, W8)
        enc1 = self.encoder_level1(self.patch_embed(inp))  # (B, C, H8, W8)
        enc2 = self.encoder_level2(self.down1_2(enc1))  # (B, 2C, H8/2, W8/2)
        enc3 = self.encoder_level3(self.down2_3(enc2))  # (B, 4C, H8/4, W8/4)
        latent = self.latent(self.down3_4(enc3))  # (B, 8C, H8/8, W8/8)
        if self.config.decoder:
            latent = self.fre1(inp, latent)  # (B, 8C, H8/8, W8/8)

        dec3 = self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], dim=1))  # (B, 4C, H8/4, W8/4)
        dec3 = self.decoder_level3(dec3)
        if self.config.decoder:
            dec3 = self.fre2(inp, dec3)  # (B, 4C, H8/4, W8/4)

        dec2 = self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], dim=1))  # (B, 2C, H8/2, W8/2)
        dec2 = self.decoder_level2(dec2)
        if self.config.decoder:
            dec2 = self.fre3(inp, dec2)  # (B, 2C, H8/2, W8/2)

        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], dim=1))  # (B, 2C, H8, W8)
        out = self.output(self.refinement(dec1)) + inp  # (B, 3, H8, W8)
        out = out[..., :h, :w]  # (B, 3, H, W)
        return RestorationOutput(out, {}, {}) if return_aux else out


# ---------------------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------------------
register_preset(
    "adair", AdaIR, AdaIRConfig, family="adair",
    description="AdaIR (ICLR'25) as released: 28.8M parameters, loads the official checkpoints",
)
register_preset(
    "adair_tiny", AdaIR, AdaIRConfig, family="adair",
    description="AdaIR scaled for CPU training and tests (dim 16, blocks 1-2-2-2, no unused layers)",
    dim=16, num_blocks=(1, 2, 2, 2), num_refinement_blocks=1, unused_layers=False, freeze_unused=True,
)
