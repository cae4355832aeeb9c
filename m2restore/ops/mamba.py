"""The Mamba mixer (selective SSM block), checkpoint-compatible with ``mamba_ssm.Mamba``.

Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (2023); official code
state-spaces/mamba ``mamba_ssm/modules/mamba_simple.py``. Same constructor arguments, parameter names, shapes
and initialisation, so state dicts move both ways, and the same outputs as the official non-fused path.

Module tree (d_inner = expand · d_model, R = dt_rank, N = d_state)::

    Mamba
    ├── in_proj    Linear(d_model -> 2·d_inner)          x and the gate z
    ├── conv1d     depthwise causal Conv1d(d_inner, k=d_conv), then SiLU
    ├── x_proj     Linear(d_inner -> R + 2N)             per-token Δ (rank R), B and C
    ├── dt_proj    Linear(R -> d_inner)                  Δ = softplus(dt_proj(Δ_low) + bias)
    ├── A_log      (d_inner, N)                          A = -exp(A_log), S4D-real init A[:, n] = -(n + 1)
    ├── D          (d_inner,)                            skip
    └── out_proj   Linear(d_inner -> d_model)

The selective scan runs through :func:`m2restore.ops.selective_scan` (our PyTorch path on CPU, mamba_ssm's
kernel on CUDA when it imports). With ``use_fast_path`` on CUDA, mamba_ssm's fused ``mamba_inner_fn`` is
used when mamba_ssm and causal_conv1d import.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from .selective_scan import scan_backend, selective_scan


@functools.cache
def _fused_kernels() -> tuple[Callable, Callable] | None:
    """``(mamba_inner_fn, causal_conv1d_fn)`` from mamba_ssm and causal_conv1d, or None if either is missing."""
    try:
        from causal_conv1d import causal_conv1d_fn
        from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn
    except ImportError:
        return None
    return mamba_inner_fn, causal_conv1d_fn


class Mamba(nn.Module):
    """Mamba mixer: (B, L, d_model) -> (B, L, d_model); arguments as ``mamba_ssm.Mamba``.

    Args:
        d_model: token width D.
        d_state: N, the SSM state size per channel.
        d_conv: width of the causal depthwise convolution.
        expand: E, d_inner = E · d_model.
        dt_rank: R, rank of the Δ projection; "auto" = ceil(d_model / 16).
        dt_min: smallest initial step Δ (log-uniform between dt_min and dt_max).
        dt_max: largest initial step Δ.
        dt_init: "random" (uniform ±R^-0.5 · dt_scale) or "constant" initialisation of ``dt_proj.weight``.
        dt_scale: scale of that initialisation.
        dt_init_floor: lower clamp of the initial Δ.
        conv_bias: bias in ``conv1d``.
        bias: bias in ``in_proj`` and ``out_proj``.
        use_fast_path: use mamba_ssm's fused kernel on CUDA when it imports.
        layer_idx: index of the layer in a stack (kept for compatibility; no inference cache here).
        device: parameter device.
        dtype: parameter dtype (``A_log`` and ``D`` stay float32, as in mamba_ssm).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        use_fast_path: bool = True,
        layer_idx: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.d_state = d_state  # N in the paper
        self.d_conv = d_conv
        self.expand = expand  # E in the paper
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.use_fast_path = use_fast_path
        self.layer_idx = layer_idx

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **factory)
        self.conv1d = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=d_conv,
            groups=self.d_inner,
            padding=d_conv - 1,
            bias=conv_bias,
            **factory,
        )
        self.activation = "silu"
        self.act = nn.SiLU()
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)
        self._init_dt_proj(dt_init, dt_scale, dt_min, dt_max, dt_init_floor)

        # S4D-real: A[:, n] = -(n + 1), stored as log(-A) in float32 whatever the module dtype.
        A = repeat(torch.arange(1, d_state + 1, dtype=torch.float32, device=device), "n -> d n", d=self.d_inner)
        self.A_log = nn.Parameter(torch.log(A).contiguous())  # (d_inner, N)
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))  # (d_inner,) float32
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def _init_dt_proj(self, dt_init: str, dt_scale: float, dt_min: float, dt_max: float, floor: float) -> None:
        """Weight ~ U(±R^-0.5·scale) (or constant); bias = softplus^-1(Δ0), Δ0 log-uniform in [dt_min, dt_max]."""
        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        else:
            raise ValueError(f"Mamba: dt_init={dt_init!r}; use 'random' or 'constant' (m2restore/ops/mamba.py)")
        bias = self.dt_proj.bias
        log_dt = torch.rand(self.d_inner, device=bias.device, dtype=bias.dtype) * (math.log(dt_max) - math.log(dt_min))
        dt = torch.exp(log_dt + math.log(dt_min)).clamp(min=floor)  # (d_inner,)
        with torch.no_grad():
            bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        bias._no_reinit = True  # mamba_ssm's model-level init leaves this bias alone

    def path(self, hidden_states: Tensor) -> str:
        """Which implementation a forward on ``hidden_states`` runs: "mamba_ssm_fused" or a scan backend."""
        if self.use_fast_path and hidden_states.is_cuda and _fused_kernels() is not None:
            return "mamba_ssm_fused"
        return scan_backend(hidden_states)

    def forward(self, hidden_states: Tensor, inference_params: None = None) -> Tensor:
        """Mix a sequence.

        Args:
            hidden_states: (B, L, d_model).
            inference_params: must be None (token-by-token decoding with a cache is not implemented here).

        Returns:
            (B, L, d_model).
        """
        if inference_params is not None:
            raise NotImplementedError("Mamba: cached step-by-step decoding is not implemented (m2restore/ops/mamba.py)")
        L = hidden_states.shape[1]
        xz = rearrange(self.in_proj.weight @ rearrange(hidden_states, "b l d -> d (b l)"), "d (b l) -> b d l", l=L)
        if self.in_proj.bias is not None:
            xz = xz + rearrange(self.in_proj.bias.to(xz.dtype), "d -> d 1")  # (B, 2·d_inner, L)
        A = -torch.exp(self.A_log.float())  # (d_inner, N)
        if self.path(hidden_states) == "mamba_ssm_fused":
            mamba_inner_fn, _ = _fused_kernels()
            return mamba_inner_fn(
                xz,
                self.conv1d.weight,
                self.conv1d.bias,
                self.x_proj.weight,
                self.dt_proj.weight,
                self.out_proj.weight,
                self.out_proj.bias,
                A,
                None,
                None,
                self.D.float(),
                delta_bias=self.dt_proj.bias.float(),
                delta_softplus=True,
            )
        x, z = xz.chunk(2, dim=1)  # (B, d_inner, L) each
        x = self._causal_conv(x)  # (B, d_inner, L)
        x_dbl = self.x_proj(rearrange(x, "b d l -> (b l) d"))  # (B·L, R + 2N)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = rearrange(self.dt_proj.weight @ dt.t(), "d (b l) -> b d l", l=L)  # (B, d_inner, L), bias in the scan
        B = rearrange(B, "(b l) n -> b n l", l=L).contiguous()  # (B, N, L)
        C = rearrange(C, "(b l) n -> b n l", l=L).contiguous()  # (B, N, L)
        y = selective_scan(
            x, dt, A, B, C, self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(), delta_softplus=True
        )  # (B, d_inner, L)
        return self.out_proj(rearrange(y, "b d l -> b l d"))  # (B, L, d_model)

    def _causal_conv(self, x: Tensor) -> Tensor:
        """SiLU(causal depthwise conv) over L: (B, d_inner, L) -> (B, d_inner, L)."""
        fused = _fused_kernels() if x.is_cuda else None
        if fused is not None:
            _, causal_conv1d_fn = fused
            weight = rearrange(self.conv1d.weight, "d 1 w -> d w")
            return causal_conv1d_fn(x=x, weight=weight, bias=self.conv1d.bias, activation=self.activation)
        return self.act(self.conv1d(x)[..., : x.shape[-1]])

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_state={self.d_state}, d_conv={self.d_conv}, expand={self.expand}"
