"""PromptIR: a Restormer U-Net whose decoder is conditioned on learned, input-weighted prompts.

Potlapalli, Zamir, Khan, Khan, "PromptIR: Prompting for All-in-One Blind Image Restoration", NeurIPS 2023
(https://arxiv.org/abs/2306.13090; code: va1shn9v/PromptIR ``net/model.py``, the source of every layer name here).

Module tree (default preset = the released model, 35,592,263 parameters)::

    PromptIR
    ├── patch_embed                      3x3 conv 3 -> C
    ├── encoder_level1..3, latent        TransformerBlock stacks at C, 2C, 4C, 8C; down1_2, down2_3, down3_4
    ├── prompt3 -> noise_level3 -> reduce_noise_level3     prompt block at the bottleneck (8C + P3 -> 4C)
    ├── up4_3, reduce_chan_level3, decoder_level3
    ├── prompt2 -> noise_level2 -> reduce_noise_level2     (4C + P2 -> 4C)
    ├── up3_2, reduce_chan_level2, decoder_level2
    ├── prompt1 -> noise_level1 -> reduce_noise_level1     (2C + P1 -> 2C)
    ├── up2_1, decoder_level1, refinement                  2C channels (no 1x1 reduce at level 1)
    ├── output                                             3x3 conv 2C -> 3, plus the input image
    └── chnl_reduce1..3, reduce_noise_channel_1..3         in the release but unused by its forward (frozen here)

Official quirks kept at the default preset (they are in the checkpoint): fixed prompt widths P = 64/128/320 and
sizes 64/32/16 (config fields here, so smaller presets can scale them); every "noise" block uses ``heads[2]``;
the bottleneck prompt block reduces 8C + P3 to 4C, so ``up4_3`` upsamples 4C; and six 1x1 convolutions that the
forward never calls. Those receive no gradient in the official training either; ``freeze_unused=True`` marks them
``requires_grad=False`` (training is unchanged and ``trainable`` counts say what actually learns); the default keeps
the official classes' behaviour and counts.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ConfigError
from ..registry import register_preset
from .base import RestorationOutput, pad_to_multiple
from .restormer_blocks import (
    Downsample,
    OverlapPatchEmbed,
    RestormerConfig,
    TransformerBlock,
    Upsample,
    transformer_stack,
)


@dataclass
class PromptIRConfig(RestormerConfig):
    """PromptIR hyper-parameters; backbone fields from :class:`RestormerConfig`, defaults = the release."""

    prompt_dims: tuple[int, int, int] = (64, 128, 320)  # P1..P3, channels of the prompts at levels 1..3 (decoder)
    prompt_len: int = 5  # N, prompt components per block, mixed by weights from the features (2C, 4C, 8C wide)
    prompt_sizes: tuple[int, int, int] = (64, 32, 16)  # H_p, spatial size of the stored prompts (then resized)
    unused_dims: tuple[int, int, int] | None = (64, 128, 256)  # widths of the release's unused chnl_reduce* /
    # reduce_noise_channel_* layers, kept (frozen) so checkpoints load with strict=True; None leaves them out

    def __post_init__(self) -> None:
        super().__post_init__()
        c = self.widths
        for name, width in (("noise_level1", c[1] + self.prompt_dims[0]), ("noise_level2", c[2] + self.prompt_dims[1]),
                            ("noise_level3", c[3] + self.prompt_dims[2])):
            if width % self.heads[2]:
                raise ConfigError(f"PromptIRConfig: {name} width {width} (features + prompt_dims) is not divisible "
                                  f"by heads[2]={self.heads[2]}; change prompt_dims")


# ---------------------------------------------------------------------------------------------------------------
# Prompt generation (PGM) -- the prompt block = PGM + prompt interaction (noise_level* TransformerBlock + 1x1)
# ---------------------------------------------------------------------------------------------------------------
class PromptGenBlock(nn.Module):
    """Mix N learned prompt components with weights predicted from the features' global average, resize, 3x3 conv.

    Args:
        prompt_dim: channels of each prompt component.
        prompt_len: N, number of components.
        prompt_size: stored spatial size of the components (bilinearly resized to the feature map).
        lin_dim: channels of the incoming features (input of the weight predictor).
    """

    def __init__(self, prompt_dim: int = 128, prompt_len: int = 5, prompt_size: int = 96, lin_dim: int = 192) -> None:
        super().__init__()
        self.prompt_param = nn.Parameter(torch.rand(1, prompt_len, prompt_dim, prompt_size, prompt_size))
        self.linear_layer = nn.Linear(lin_dim, prompt_len)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        weights = F.softmax(self.linear_layer(x.mean(dim=(-2, -1))), dim=1)  # (B, N)
        prompt = torch.einsum("bn,nchw->bchw", weights, self.prompt_param[0])  # (B, P, H_p, W_p)
        prompt = F.interpolate(prompt, (h, w), mode="bilinear")  # (B, P, H, W)
        return self.conv3x3(prompt)  # (B, P, H, W)


# ---------------------------------------------------------------------------------------------------------------
# PromptIR
# ---------------------------------------------------------------------------------------------------------------
class PromptIR(nn.Module):
    """All-in-one restoration with prompt blocks between decoder levels; any input size (padded to a multiple of 8).

    Args:
        config: the hyper-parameters; ``PromptIRConfig()`` is the released model.
    """

    def __init__(self, config: PromptIRConfig | None = None) -> None:
        super().__init__()
        cfg = self.config = config or PromptIRConfig()
        c1, c2, c3, c4 = cfg.widths  # C, 2C, 4C, 8C
        p1, p2, p3 = cfg.prompt_dims
        heads, blocks = cfg.heads, cfg.num_blocks

        def block(dim: int, num_heads: int) -> TransformerBlock:
            return TransformerBlock(dim, num_heads, cfg.ffn_expansion_factor, cfg.bias, cfg.layernorm_type)

        self.patch_embed = OverlapPatchEmbed(cfg.inp_channels, c1)
        # prompt generation blocks (PGM), read the decoder features at 2C, 4C, 8C
        self.prompt1 = PromptGenBlock(p1, cfg.prompt_len, cfg.prompt_sizes[0], lin_dim=c2)
        self.prompt2 = PromptGenBlock(p2, cfg.prompt_len, cfg.prompt_sizes[1], lin_dim=c3)
        self.prompt3 = PromptGenBlock(p3, cfg.prompt_len, cfg.prompt_sizes[2], lin_dim=c4)
        if cfg.unused_dims is not None:  # present in the release, never called (see module docstring)
            u1, u2, u3 = cfg.unused_dims
            self.chnl_reduce1 = nn.Conv2d(p1, u1, kernel_size=1, bias=cfg.bias)
            self.chnl_reduce2 = nn.Conv2d(p2, u2, kernel_size=1, bias=cfg.bias)
            self.chnl_reduce3 = nn.Conv2d(p3, u3, kernel_size=1, bias=cfg.bias)
            self.reduce_noise_channel_1 = nn.Conv2d(c1 + u1, c1, kernel_size=1, bias=cfg.bias)
            self.reduce_noise_channel_2 = nn.Conv2d(c2 + u2, c2, kernel_size=1, bias=cfg.bias)
            self.reduce_noise_channel_3 = nn.Conv2d(c3 + u3, c3, kernel_size=1, bias=cfg.bias)

        # encoder
        self.encoder_level1 = transformer_stack(cfg, c1, heads[0], blocks[0])
        self.down1_2 = Downsample(c1)
        self.encoder_level2 = transformer_stack(cfg, c2, heads[1], blocks[1])
        self.down2_3 = Downsample(c2)
        self.encoder_level3 = transformer_stack(cfg, c3, heads[2], blocks[2])
        self.down3_4 = Downsample(c3)
        self.latent = transformer_stack(cfg, c4, heads[3], blocks[3])

        # decoder, level 3 (the bottleneck prompt block first reduces 8C + P3 to 4C)
        self.noise_level3 = block(c4 + p3, heads[2])
        self.reduce_noise_level3 = nn.Conv2d(c4 + p3, c3, kernel_size=1, bias=cfg.bias)
        self.up4_3 = Upsample(c3)
        self.reduce_chan_level3 = nn.Conv2d(c2 + c3, c3, kernel_size=1, bias=cfg.bias)
        self.decoder_level3 = transformer_stack(cfg, c3, heads[2], blocks[2])
        # level 2
        self.noise_level2 = block(c3 + p2, heads[2])
        self.reduce_noise_level2 = nn.Conv2d(c3 + p2, c3, kernel_size=1, bias=cfg.bias)
        self.up3_2 = Upsample(c3)
        self.reduce_chan_level2 = nn.Conv2d(c3, c2, kernel_size=1, bias=cfg.bias)
        self.decoder_level2 = transformer_stack(cfg, c2, heads[1], blocks[1])
        # level 1 (2C channels: the skip is concatenated without a 1x1 reduce)
        self.noise_level1 = block(c2 + p1, heads[2])
        self.reduce_noise_level1 = nn.Conv2d(c2 + p1, c2, kernel_size=1, bias=cfg.bias)
        self.up2_1 = Upsample(c2)
        self.decoder_level1 = transformer_stack(cfg, c2, heads[0], blocks[0])
        self.refinement = transformer_stack(cfg, c2, heads[0], cfg.num_refinement_blocks)
        self.output = nn.Conv2d(c2, cfg.out_channels, kernel_size=3, padding=1, bias=cfg.bias)

        for name in ("chnl_reduce1", "chnl_reduce2", "chnl_reduce3", "reduce_noise_channel_1",
                     "reduce_noise_channel_2", "reduce_noise_channel_3"):
            if hasattr(self, name) and cfg.freeze_unused:
                getattr(self, name).requires_grad_(False)

    @staticmethod
    def _prompt(features: Tensor, gen: PromptGenBlock, interact: TransformerBlock, reduce: nn.Conv2d) -> Tensor:
        """Prompt block: concatenate the generated prompt, one Transformer block, 1x1 reduce."""
        x = torch.cat([features, gen(features)], dim=1)  # (B, C + P, H, W)
        return reduce(interact(x))  # (B, C', H, W)

    def forward(self, x: Tensor, return_aux: bool = False) -> Tensor | RestorationOutput:
        """Restore ``x`` (B, 3, H, W) of any size; ``return_aux`` wraps the image in a RestorationOutput."""
        inp, (h, w) = pad_to_multiple(x, 8)  # (B, 3, H8, W8)
        enc1 = self.encoder_level1(self.patch_embed(inp))  # (B, C, H8, W8)
        enc2 = self.encoder_level2(self.down1_2(enc1))  # (B, 2C, H8/2, W8/2)
        enc3 = self.encoder_level3(self.down2_3(enc2))  # (B, 4C, H8/4, W8/4)
        latent = self.latent(self.down3_4(enc3))  # (B, 8C, H8/8, W8/8)

        latent = self._prompt(latent, self.prompt3, self.noise_level3, self.reduce_noise_level3)  # (B, 4C, H8/8, .)
        dec3 = self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], dim=1))  # (B, 4C, H8/4, W8/4)
        dec3 = self.decoder_level3(dec3)
        dec3 = self._prompt(dec3, self.prompt2, self.noise_level2, self.reduce_noise_level2)  # (B, 4C, H8/4, W8/4)

        dec2 = self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], dim=1))  # (B, 2C, H8/2, W8/2)
        dec2 = self.decoder_level2(dec2)
        dec2 = self._prompt(dec2, self.prompt1, self.noise_level1, self.reduce_noise_level1)  # (B, 2C, H8/2, W8/2)

        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], dim=1))  # (B, 2C, H8, W8)
        out = self.output(self.refinement(dec1)) + inp  # (B, 3, H8, W8)
        out = out[..., :h, :w]  # (B, 3, H, W)
        return RestorationOutput(out, {}, {}) if return_aux else out


# ---------------------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------------------
register_preset(
    "promptir", PromptIR, PromptIRConfig, family="promptir",
    description="PromptIR (NeurIPS'23) as released: 35.6M parameters, loads the official checkpoints",
)
register_preset(
    "promptir_tiny", PromptIR, PromptIRConfig, family="promptir",
    description="PromptIR scaled for CPU training and tests (dim 16, prompts /4, no unused layers)",
    dim=16, num_blocks=(1, 2, 2, 2), num_refinement_blocks=1, prompt_dims=(16, 32, 80), prompt_sizes=(32, 16, 8),
    unused_dims=None, freeze_unused=True,
)
