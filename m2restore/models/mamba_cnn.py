"""Dual-stream Mamba-CNN blocks of M2Restore's bottleneck and their dynamic gate.

The paper's "MCDB" fuses a *global* stream (a Mamba selective state-space model over the H*W pixel tokens) with a
*local* stream (depthwise 3x3 conv + GELU) through a dynamic gate ("DGF"). The release ``yz-wang/M2Restore``
(``net/M2Restore.py``: ``MB``, ``MambaLayer``) builds the block as ``x + mixer(LN(x))`` then ``x + GDFN(LN(x))``;
parameter names below follow it so that its checkpoints load.

Module tree::

    MBBlock                      release: MB            (norm1, ssm, norm2, ffn)
      └─ MambaCNNMixer           release: MambaLayer    (norm, mamba, norm2, conv_path, + gate modules)
           ├─ gate="learned":    prompt_proj, gate_net  (release: 1x1 convs on [x, CLIP embedding]; G weights Mamba)
           ├─ gate="edge":       edge_gate = EdgeGate   (paper: DWConv-GELU-DWConv-Sigmoid on degradation features
           │                                             and a Sobel edge map; G weights the CNN stream)
           └─ gate="fixed":      nothing                (0.5 / 0.5, ablation)

Scan orders of the global stream: ``raster`` (release: one direction, row-major), ``bidirectional`` (row-major
forward and backward) and ``four`` (row- and column-major, each both ways, as VMamba's cross-scan). All directions
share one Mamba (they run as one batch) and are averaged after being put back in place, so the scan order changes
the computation but not the parameters.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..ops import Mamba
from .restormer_blocks import FeedForward, LayerNorm

GateType = Literal["edge", "learned", "fixed"]
ScanOrder = Literal["raster", "bidirectional", "four"]

_LUMA = (0.299, 0.587, 0.114)  # BT.601 weights of the grey image the edge map is taken from


# ----------------------------------------------------------------------------------------------------------------
# Edge signal
# ----------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def sobel_magnitude(image: Tensor) -> Tensor:
    """Sobel gradient magnitude (B, 1, H, W) of the luminance of ``image`` (B, 3, H, W) or (B, 1, H, W).

    Replicate padding, so a flat image gives exactly zero everywhere. A data signal: no gradient flows through it.
    """
    grey = image if image.shape[1] == 1 else sum(w * image[:, i : i + 1] for i, w in enumerate(_LUMA))  # (B,1,H,W)
    p = F.pad(grey, (1, 1, 1, 1), mode="replicate")  # (B, 1, H+2, W+2)
    # separable Sobel as differences then [1, 2, 1] smoothing: exact zeros where the image is flat
    dx = p[..., 2:] - p[..., :-2]  # (B, 1, H+2, W)
    dy = p[..., 2:, :] - p[..., :-2, :]  # (B, 1, H, W+2)
    gx = dx[..., :-2, :] + 2 * dx[..., 1:-1, :] + dx[..., 2:, :]  # (B, 1, H, W)
    gy = dy[..., :-2] + 2 * dy[..., 1:-1] + dy[..., 2:]  # (B, 1, H, W)
    return torch.hypot(gx, gy)  # (B, 1, H, W)


@torch.no_grad()
def edge_map(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Edge statistics of ``image`` pooled to feature resolution ``size``: (B, 2, h, w) = [mean, max] of Sobel.

    The mean says how much structure a feature pixel covers, the max keeps thin streaks and flakes visible.
    """
    mag = sobel_magnitude(image)  # (B, 1, H, W)
    return torch.cat([F.adaptive_avg_pool2d(mag, size), F.adaptive_max_pool2d(mag, size)], dim=1)  # (B, 2, h, w)


# ----------------------------------------------------------------------------------------------------------------
# Scan orders
# ----------------------------------------------------------------------------------------------------------------
def num_directions(scan: ScanOrder) -> int:
    """Number of token sequences a scan order produces per image."""
    return {"raster": 1, "bidirectional": 2, "four": 4}[scan]


def to_sequences(x: Tensor, scan: ScanOrder) -> Tensor:
    """Token sequences (D*B, H*W, C) of feature map ``x`` (B, C, H, W) in the D directions of ``scan``."""
    rows = rearrange(x, "b c h w -> b (h w) c")  # (B, L, C) row-major
    if scan == "raster":
        return rows
    seqs = [rows, rows.flip(1)]
    if scan == "four":
        cols = rearrange(x, "b c h w -> b (w h) c")  # (B, L, C) column-major
        seqs += [cols, cols.flip(1)]
    return torch.cat(seqs, dim=0)  # (D*B, L, C)


def from_sequences(y: Tensor, scan: ScanOrder, h: int, w: int) -> Tensor:
    """Inverse of :func:`to_sequences`: put every direction back in place and average -> (B, L, C) row-major."""
    d = num_directions(scan)
    parts = y.chunk(d, dim=0)  # D x (B, L, C)
    out = parts[0]
    if d >= 2:
        out = out + parts[1].flip(1)
    if d == 4:
        for part in (parts[2], parts[3].flip(1)):
            out = out + rearrange(part, "b (w h) c -> b (h w) c", h=h, w=w)
    return out / d  # (B, L, C)


# ----------------------------------------------------------------------------------------------------------------
# Dynamic gates
# ----------------------------------------------------------------------------------------------------------------
class EdgeGate(nn.Module):
    """Edge-aware dynamic gate (paper: DGF): G = sigmoid(DWConv(GELU(DWConv(x + P(d) + E(edges))))).

    ``x`` are the block's (normalised) features, ``d`` the degradation embedding of the CLIP prior and ``edges``
    the pooled Sobel statistics of the input image. G is per pixel and channel and weights the *local* (CNN)
    stream: where edges and degradation cues are strong the block leans on the local conv, elsewhere on the
    global Mamba stream.

    Args:
        dim: channels C.
        embed_dim: width of the prior embedding; 0 builds the gate without it.
        edge_channels: channels of the edge map (2: mean and max).
    """

    def __init__(self, dim: int, embed_dim: int, edge_channels: int = 2) -> None:
        super().__init__()
        self.edge_proj = nn.Conv2d(edge_channels, dim, 1)
        self.deg_proj = nn.Linear(embed_dim, dim) if embed_dim else None
        self.dw1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.dw2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: Tensor, edges: Tensor, embedding: Tensor | None = None) -> Tensor:
        """Return G (B, C, H, W) in (0, 1) from features (B, C, H, W), edges (B, 2, H, W), embedding (B, E)."""
        h = x + self.edge_proj(edges)  # (B, C, H, W)
        if self.deg_proj is not None and embedding is not None:
            h = h + self.deg_proj(embedding)[:, :, None, None]  # (B, C, H, W)
        return torch.sigmoid(self.dw2(F.gelu(self.dw1(h))))  # (B, C, H, W)


# ----------------------------------------------------------------------------------------------------------------
# The dual-stream mixer and the bottleneck block
# ----------------------------------------------------------------------------------------------------------------
class MambaCNNMixer(nn.Module):
    """Global Mamba stream and local depthwise-conv stream, fused by a dynamic gate (release: MambaLayer).

    Args:
        dim: channels C.
        embed_dim: width of the CLIP embedding fed to the gate; 0 means no prior (the gate sees features only).
        gate: "learned" (release), "edge" (paper) or "fixed" (0.5).
        scan: token order of the Mamba stream.
        use_mamba: build the global stream.
        use_cnn: build the local stream.
        d_state: N, SSM state size per channel.
        d_conv: width of Mamba's causal conv.
        expand: E, Mamba's inner width factor.
    """

    def __init__(
        self, dim: int, embed_dim: int = 512, gate: GateType = "learned", scan: ScanOrder = "raster",
        use_mamba: bool = True, use_cnn: bool = True, d_state: int = 16, d_conv: int = 4, expand: int = 2,
    ) -> None:
        super().__init__()
        if not (use_mamba or use_cnn):
            raise ValueError("mamba_cnn.py: use_mamba and use_cnn cannot both be False; keep at least one stream")
        if gate not in ("edge", "learned", "fixed"):
            raise ValueError(f"mamba_cnn.py: unknown gate {gate!r}; use 'edge', 'learned' or 'fixed'")
        num_directions(scan)  # validates the name
        self.dim, self.scan = dim, scan
        self.gate = gate if (use_mamba and use_cnn) else None  # one stream: nothing to gate
        if use_mamba:
            self.norm = nn.LayerNorm(dim)
            self.mamba = Mamba(d_model=dim, d_state=d_state, d_conv=d_conv, expand=expand)
            self.norm2 = nn.LayerNorm(dim)
        else:
            self.mamba = None
        self.conv_path = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.GELU()) if use_cnn else None
        self.prompt_proj = self.gate_net = self.edge_gate = None
        if self.gate == "learned":
            if embed_dim:
                self.prompt_proj = nn.Sequential(nn.Linear(embed_dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
            cin = 2 * dim if embed_dim else dim
            self.gate_net = nn.Sequential(nn.Conv2d(cin, dim, 1), nn.GELU(), nn.Conv2d(dim, 1, 1), nn.Sigmoid())
        elif self.gate == "edge":
            self.edge_gate = EdgeGate(dim, embed_dim)

    def global_stream(self, x: Tensor) -> Tensor:
        """LN -> Mamba over the H*W tokens in the configured scan order(s) -> LN, back to (B, C, H, W)."""
        h, w = x.shape[-2:]
        seqs = self.norm(to_sequences(x, self.scan))  # (D*B, L, C); per-token LN commutes with the token order
        y = from_sequences(self.mamba(seqs), self.scan, h, w)  # (B, L, C)
        return rearrange(self.norm2(y), "b (h w) c -> b c h w", h=h, w=w)  # (B, C, H, W)

    def forward(
        self, x: Tensor, embedding: Tensor | None = None, edges: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Fuse the two streams.

        Args:
            x: normalised features (B, C, H, W).
            embedding: CLIP embedding (B, E) for the gate, or None without a prior.
            edges: edge map (B, 2, H, W), required by the edge gate.

        Returns:
            The mixed features (B, C, H, W) and the weight of the local stream (B, 1, H, W) (detached,
            channel-averaged), or None when only one stream exists.
        """
        glob = self.global_stream(x) if self.mamba is not None else None  # (B, C, H, W)
        local = self.conv_path(x) if self.conv_path is not None else None  # (B, C, H, W)
        if glob is None or local is None:
            return (local if glob is None else glob), None
        if self.gate == "fixed":
            return 0.5 * (glob + local), torch.full_like(x[:, :1], 0.5)
        if self.gate == "learned":
            gate_in = x
            if self.prompt_proj is not None:
                if embedding is None:
                    raise ValueError("mamba_cnn.py: this 'learned' gate was built with embed_dim > 0; pass embedding")
                p = self.prompt_proj(embedding)[:, :, None, None].expand_as(x)  # (B, C, H, W)
                gate_in = torch.cat([x, p], dim=1)  # (B, 2C, H, W)
            g = self.gate_net(gate_in)  # (B, 1, H, W) weight of the Mamba stream
            return g * glob + (1 - g) * local, (1 - g).detach()
        if edges is None:
            raise ValueError("mamba_cnn.py: the 'edge' gate needs an edge map; pass edges=edge_map(image, (H, W))")
        g = self.edge_gate(x, edges, embedding)  # (B, C, H, W) weight of the CNN stream
        return g * local + (1 - g) * glob, g.mean(1, keepdim=True).detach()


class MBBlock(nn.Module):
    """Bottleneck block (release: MB): x + mixer(LN(x)), then x + GDFN(LN(x)).

    Args:
        dim: channels C.
        ffn_expansion_factor: GDFN hidden factor.
        bias: conv bias in the GDFN.
        layernorm_type: "WithBias" or "BiasFree".
        **mixer_kwargs: forwarded to :class:`MambaCNNMixer`.
    """

    def __init__(
        self, dim: int, ffn_expansion_factor: float = 2.66, bias: bool = False, layernorm_type: str = "WithBias",
        **mixer_kwargs,
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, layernorm_type)
        self.ssm = MambaCNNMixer(dim, **mixer_kwargs)
        self.norm2 = LayerNorm(dim, layernorm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(
        self, x: Tensor, embedding: Tensor | None = None, edges: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Return the block output (B, C, H, W) and the local-stream weight map (see MambaCNNMixer)."""
        mixed, local_weight = self.ssm(self.norm1(x), embedding, edges)
        x = x + mixed  # (B, C, H, W)
        return x + self.ffn(self.norm2(x)), local_weight
