"""Selective scan (the S6 layer of Mamba): one API, four implementations.

Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (2023). For every batch b,
channel d and state n, with Δ = softplus(Δ_raw + delta_bias) when asked:

    h_t = exp(Δ_t · A) ⊙ h_{t-1} + Δ_t · B_t · u_t        (discretised recurrence, h_0 = 0)
    y_t = <C_t, h_t> + D · u_t                             (read-out and skip)
    out = y · SiLU(z)                                      (optional gate)

The API and semantics are those of ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``
(state-spaces/mamba): ``u, delta`` (b, d, L); ``A`` (d, N); ``B, C`` each (d, N), (b, N, L) or grouped
(b, G, N, L) with G dividing d; ``D`` (d,); ``z`` (b, d, L); ``delta_bias`` (d,). Half-precision inputs
are computed in float32, float64 inputs in float64; the output has ``u``'s dtype and ``last_state``
(b, d, N) the compute dtype. Real ``A`` only (the complex S4D variant is not supported).

Implementations, chosen by :func:`scan_backend`:
1. :func:`selective_scan_ref` -- the sequential loop, the equations above line by line (tests, teaching).
2. :func:`selective_scan_torch` (``"torch_fast"``) -- chunked sequential scan with a hand-derived backward:
   the forward keeps only one state per chunk; the backward recomputes a chunk's states and runs the
   adjoint recurrence in reverse. Memory is a few chunks of (T, b, d, N), never the full (b, d, L, N).
   Any device; the fallback wherever the compiled paths are missing.
3. :func:`selective_scan_numba` (``"numba_cpu"``) -- the same algorithm compiled with numba, each task a
   block of channels whose states sit in a small local array, vectorised across the channels
   (``scan_numba.py``); CPU, time-varying B and C, when numba imports. The default on the CPU.
4. ``mamba_ssm``'s CUDA kernel (``"mamba_ssm_cuda"``) -- only when ``mamba_ssm`` imports and the
   tensors are on CUDA.
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
from collections.abc import Callable
from types import ModuleType

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "reference", "torch_fast", "numba_cpu", "mamba_ssm_cuda")
# Target elements in one chunk buffer (T, b, d, N): small enough to stay in cache, big enough that the
# per-chunk Python overhead is amortised (measured by benchmarks/scan_speed.py --chunk-sweep).
_CHUNK_ELEMENTS = 1 << 18


# ---------------------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------------------
@functools.cache
def _mamba_ssm_scan_fn() -> Callable | None:
    """``mamba_ssm``'s ``selective_scan_fn`` if its CUDA extension imports, else None (logged once)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError as err:  # no package, or no compiled selective_scan_cuda extension
        logger.info("mamba_ssm unavailable (%s): CUDA tensors use the torch_fast selective scan", err)
        return None
    return selective_scan_fn


@functools.cache
def _numba_module() -> ModuleType | None:
    """The compiled CPU scan (``scan_numba``) if numba imports, else None (logged once)."""
    try:
        return importlib.import_module(f"{__package__}.scan_numba")
    except ImportError as err:
        logger.info("numba unavailable (%s): CPU tensors use the torch_fast selective scan", err)
        return None


def scan_backend(tensor: Tensor) -> str:
    """Name the implementation :func:`selective_scan` uses for inputs like ``tensor``.

    Args:
        tensor: the ``u`` argument (its device and dtype decide).

    Returns:
        ``"mamba_ssm_cuda"`` for CUDA float32/16/bf16 tensors when ``mamba_ssm`` imports, ``"numba_cpu"`` for CPU
        tensors when numba imports (calls with a constant (d, N) B or C take ``"torch_fast"``), else
        ``"torch_fast"``.
    """
    if tensor.is_cuda and tensor.dtype != torch.float64 and _mamba_ssm_scan_fn() is not None:
        return "mamba_ssm_cuda"
    if tensor.device.type == "cpu" and _numba_module() is not None:
        return "numba_cpu"
    return "torch_fast"


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    backend: str = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan with the semantics of ``mamba_ssm``'s ``selective_scan_fn``.

    Args:
        u: input (b, d, L).
        delta: step size before bias/softplus (b, d, L).
        A: state matrix, real, (d, N).
        B: input matrix (d, N), (b, N, L) or (b, G, N, L).
        C: output matrix, same layouts as ``B``.
        D: skip weight (d,) or None.
        z: gate (b, d, L) or None; the output is multiplied by SiLU(z).
        delta_bias: added to ``delta`` (d,) or None.
        delta_softplus: apply softplus to ``delta`` (after the bias).
        return_last_state: also return h_L (b, d, N); like mamba_ssm, no gradient flows through it.
        backend: ``"auto"`` (see :func:`scan_backend`) or one of ``"reference"``, ``"torch_fast"``, ``"numba_cpu"``,
            ``"mamba_ssm_cuda"``.

    Returns:
        ``out`` (b, d, L) in ``u``'s dtype, or ``(out, last_state)``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"selective_scan: backend={backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        backend = scan_backend(u)
        if backend == "numba_cpu" and (B.dim() == 2 or C.dim() == 2):
            backend = "torch_fast"
    impl = {
        "reference": selective_scan_ref,
        "torch_fast": selective_scan_torch,
        "numba_cpu": selective_scan_numba,
        "mamba_ssm_cuda": selective_scan_mamba_cuda,
    }[backend]
    return impl(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


# ---------------------------------------------------------------------------------------------------------
# Shared input handling
# ---------------------------------------------------------------------------------------------------------
def _check_and_group(X: Tensor, name: str, b: int, d: int, L: int, N: int) -> Tensor:
    """Validate a B or C argument and return it as (d, N) or grouped (b, G, N, L)."""
    if X.is_complex():
        raise NotImplementedError(f"selective_scan: complex {name} is not supported (m2restore/ops/selective_scan.py)")
    if X.dim() == 2 and X.shape == (d, N):
        return X
    if X.dim() == 3 and X.shape == (b, N, L):
        return rearrange(X, "b n l -> b 1 n l")
    if X.dim() == 4 and X.shape[0] == b and X.shape[2:] == (N, L) and d % X.shape[1] == 0:
        return X
    raise ValueError(
        f"selective_scan: {name} has shape {tuple(X.shape)}; expected ({d}, {N}), ({b}, {N}, {L}) or "
        f"({b}, G, {N}, {L}) with G dividing {d}"
    )


def _prepare(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, delta_bias: Tensor | None, delta_softplus: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Cast to the compute dtype, group B and C, and turn the raw ``delta`` into the step Δ."""
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"selective_scan: u {tuple(u.shape)} and delta {tuple(delta.shape)} must both be (b, d, L)")
    if A.is_complex():
        raise NotImplementedError("selective_scan: complex A is not supported (m2restore/ops/selective_scan.py)")
    b, d, L = u.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"selective_scan: A has shape {tuple(A.shape)}; expected ({d}, N)")
    N = A.shape[1]
    B, C = _check_and_group(B, "B", b, d, L, N), _check_and_group(C, "C", b, d, L, N)
    cdtype = functools.reduce(torch.promote_types, (u.dtype, delta.dtype, A.dtype, B.dtype, C.dtype), torch.float32)
    u, delta, A, B, C = (t.to(cdtype) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + rearrange(delta_bias.to(cdtype), "d -> d 1")  # (b, d, L)
    if delta_softplus:
        delta = F.softplus(delta)  # threshold 20, as the CUDA kernel
    return u, delta, A, B, C


def _finish(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None, out_dtype: torch.dtype) -> Tensor:
    """Add the skip ``D · u``, gate with SiLU(z) and cast to the output dtype."""
    if D is not None:
        y = y + u * rearrange(D.to(y.dtype), "d -> d 1")  # (b, d, L)
    if z is not None:
        y = y * F.silu(z.to(y.dtype))  # (b, d, L)
    return y.to(out_dtype)


def _run_scan(
    scan: Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]],
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    return_last_state: bool,
) -> Tensor | tuple[Tensor, Tensor]:
    """The body shared by the fast paths: prepare the inputs, ``scan`` them, add the skip and the gate.

    Args:
        scan: (u, Δ, A, B, C) in the compute dtype, B and C with the same groups -> (y (b, d, L), h_L (b, d, N)).
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state: as :func:`selective_scan`.
    """
    out_dtype = u.dtype
    u, delta, A, B, C = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    y, last = scan(u, delta, A, *_same_groups(B, C))  # (b, d, L), (b, d, N)
    out = _finish(y, u, D, z, out_dtype)  # (b, d, L)
    return (out, last) if return_last_state else out


def _same_groups(B: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
    """Give grouped B and C the same number of groups (the lcm; rare) by repeating each group."""
    G = math.lcm(*(X.shape[1] for X in (B, C) if X.dim() == 4))  # 1 when both are constant
    return tuple(X if X.dim() == 2 else X.repeat_interleave(G // X.shape[1], dim=1) for X in (B, C))


def _per_channel(X: Tensor, b: int, d: int, L: int) -> Tensor:
    """Broadcast a (d, N) or (b, G, N, L) B/C to a (b, d, N, L) view (no copy)."""
    if X.dim() == 2:
        return rearrange(X, "d n -> 1 d n 1").expand(b, d, X.shape[1], L)
    G = X.shape[1]
    return rearrange(X, "b g n l -> b g 1 n l").expand(-1, -1, d // G, -1, -1).reshape(b, d, X.shape[2], L)


# ---------------------------------------------------------------------------------------------------------
# 1. Sequential reference
# ---------------------------------------------------------------------------------------------------------
def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Sequential selective scan, one time step per loop iteration (same arguments as :func:`selective_scan`).

    Differentiable by autograd. Written as the equations: discretise, recur over t, read out. The loop
    iterates over ``unbind`` slices (indexing ``x[:, :, t]`` inside it would make the backward quadratic
    in L) and leaves the read-out <C_t, h_t> to one einsum after the loop.
    """
    out_dtype = u.dtype
    u, delta, A, B, C = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    b, d, L = u.shape
    A_bar = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))  # (b, d, L, N)  exp(Δ A)
    Bu_bar = torch.einsum("bdl,bdnl->bdln", delta * u, _per_channel(B, b, d, L))  # (b, d, L, N)  Δ B u
    h = u.new_zeros(b, d, A.shape[1])  # (b, d, N)  h_0
    states = []
    for A_t, Bu_t in zip(A_bar.unbind(2), Bu_bar.unbind(2)):
        h = A_t * h + Bu_t  # (b, d, N)  h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t
        states.append(h)
    y = torch.einsum("bdln,bdnl->bdl", torch.stack(states, dim=2), _per_channel(C, b, d, L))  # (b, d, L)
    out = _finish(y, u, D, z, out_dtype)  # (b, d, L)
    return (out, h.detach()) if return_last_state else out


# ---------------------------------------------------------------------------------------------------------
# 2. Fast PyTorch path: chunked sequential scan with a hand-derived backward
# ---------------------------------------------------------------------------------------------------------
# Layout: a chunk of states is (T, b, G, N, H) with d = G·H channels innermost, so that sums over the state
# index n are vectorised over channels and the per-(t, b, g) contractions are small contiguous matmuls.
# Per-channel sequences are viewed as (L, b, G, 1, H); B and C as (L, b, G, N, 1), or (G, N, H) if constant.
def _channels5(X: Tensor, G: int) -> Tensor:
    """(L, b, d) -> (L, b, G, 1, H) view."""
    return rearrange(X, "t b (g h) -> t b g 1 h", g=G)


def _operand5(X: Tensor, G: int) -> Tensor:
    """B or C, broadcastable to states: time-major (L, b, G, N) -> (L, b, G, N, 1) view, or (d, N) -> (G, N, H)."""
    if X.dim() == 2:
        return rearrange(X, "(g h) n -> g n h", g=G)  # (G, N, H)
    return rearrange(X, "t b g n -> t b g n 1")  # (L, b, G, N, 1)


def _views5(
    x_t: Tensor, delta_t: Tensor, A: Tensor, B_t: Tensor, C_t: Tensor, G: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Time-major Δ·u, Δ (L, b, d), A (d, N) and B, C (L, b, G, N) or (d, N) as the chunk layout's views."""
    return _channels5(x_t, G), _channels5(delta_t, G), _operand5(A, G), _operand5(B_t, G), _operand5(C_t, G)


def _steps(X5: Tensor, t0: int, t1: int) -> Tensor:
    """Steps t0..t1 of an operand from :func:`_operand5` (a constant one is returned whole)."""
    return X5 if X5.dim() == 3 else X5[t0:t1]


def _sum_n(S: Tensor, X5: Tensor) -> Tensor:
    """sum_n X_n · S_n: states (T, b, G, N, H) and a B/C operand -> (T, b, G, 1, H)."""
    if X5.dim() == 5:
        return X5.transpose(-1, -2) @ S  # (T, b, G, 1, H)  one small matmul per (t, b, g)
    return (S * X5).sum(-2, keepdim=True)  # (T, b, G, 1, H)


def _operand_grad(w: Tensor, S: Tensor, time_varying: bool) -> Tensor:
    """Gradient of a B/C operand from per-channel weights w (T, b, G, 1, H) and S (T, b, G, N, H)."""
    if time_varying:
        return S @ w.transpose(-1, -2)  # (T, b, G, N, 1)  sum over the channels of a group
    return (w * S).sum((0, 1))  # (G, N, H)  and over time and batch


def _scan_chunk(x5: Tensor, delta5: Tensor, A5: Tensor, B5: Tensor, h0: Tensor, S: Tensor, A_bar: Tensor) -> None:
    """Fill ``S`` with the states of one chunk, starting from the state ``h0`` before it, and ``A_bar`` with exp(Δ A).

    Args:
        x5, delta5: the chunk's Δ·u and Δ (T, b, G, 1, H).
        A5: A as (G, N, H).
        B5: the chunk's B (T, b, G, N, 1) or constant (G, N, H).
        h0: (b, G, N, H).
        S, A_bar: output buffers (T, b, G, N, H).
    """
    torch.mul(delta5, A5, out=A_bar).exp_()  # (T, b, G, N, H)
    torch.mul(x5, B5, out=S)  # (T, b, G, N, H)  Δ u B, turned into the states in place
    Ss, As = S.unbind(0), A_bar.unbind(0)
    Ss[0].addcmul_(As[0], h0)
    for t in range(1, S.shape[0]):
        Ss[t].addcmul_(As[t], Ss[t - 1])


class _ChunkedScanFn(torch.autograd.Function):
    """y_t = <C_t, h_t>, h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t u_t B_t, for x = Δ·u.

    Forward keeps h only at the start of each chunk of T steps. Backward, chunk by chunk from the end,
    recomputes the chunk's states and runs the adjoint recurrence backwards in time,
    g_t = C_t y'_t + exp(Δ_{t+1} A) ⊙ g_{t+1}   (g_t = dLoss/dh_t),
    then reads every gradient off g, h and h_{t-1}: d(Δu)_t = <g_t, B_t>, dB_t = Σ_d g_t Δ_t u_t,
    dC_t = Σ_d y'_t h_t and, with X_t = g_t ⊙ exp(Δ_t A) ⊙ h_{t-1}, dΔ_t = <X_t, A>, dA = Σ_{b,t} X_t Δ_t.
    Inputs and gradients use the caller's layouts; the time-major copies live only inside.
    """

    @staticmethod
    def forward(ctx, x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk: int):
        """x = Δ·u and delta: (b, d, L); A: (d, N); B, C: (d, N) or (b, G, N, L) with the same G."""
        b, d, L = x.shape
        G = next((X.shape[1] for X in (B, C) if X.dim() == 4), 1)
        N, T = A.shape[1], min(chunk, L)
        x_t, delta_t = (rearrange(t, "b d l -> l b d").contiguous() for t in (x, delta))  # (L, b, d)
        B_t, C_t = (X if X.dim() == 2 else rearrange(X, "b g n l -> l b g n").contiguous() for X in (B, C))
        x5, delta5, A5, B5, C5 = _views5(x_t, delta_t, A, B_t, C_t, G)
        n_chunks = -(-L // T)
        checkpoints = x.new_empty(n_chunks, b, G, N, d // G)  # the state before each chunk
        checkpoints[0].zero_()
        S_buf, A_buf = (x.new_empty(T, b, G, N, d // G) for _ in range(2))
        y_t = x.new_empty(L, b, d)
        y5 = _channels5(y_t, G)
        for c in range(n_chunks):
            t0, t1 = c * T, min(L, (c + 1) * T)
            S = S_buf[: t1 - t0]  # (T, b, G, N, H)
            _scan_chunk(x5[t0:t1], delta5[t0:t1], A5, _steps(B5, t0, t1), checkpoints[c], S, A_buf[: t1 - t0])
            y5[t0:t1] = _sum_n(S, _steps(C5, t0, t1))
            if c + 1 < n_chunks:
                checkpoints[c + 1] = S[-1]
        last = rearrange(S[-1], "b g n h -> b (g h) n").clone()  # (b, d, N)
        ctx.save_for_backward(x_t, delta_t, A, B_t, C_t, checkpoints)
        ctx.groups, ctx.chunk = G, T
        ctx.mark_non_differentiable(last)
        return rearrange(y_t, "l b d -> b d l").contiguous(), last

    @staticmethod
    def backward(ctx, dy: Tensor, _dlast: Tensor | None):
        x_t, delta_t, A, B_t, C_t, checkpoints = ctx.saved_tensors
        G, T = ctx.groups, ctx.chunk
        L = x_t.shape[0]
        x5, delta5, A5, B5, C5 = _views5(x_t, delta_t, A, B_t, C_t, G)
        dy5 = _channels5(rearrange(dy, "b d l -> l b d").contiguous(), G)  # (L, b, G, 1, H)
        dx_t, ddelta_t = torch.empty_like(x_t), torch.empty_like(delta_t)  # (L, b, d)
        dx5, ddelta5 = _channels5(dx_t, G), _channels5(ddelta_t, G)
        dA5 = torch.zeros_like(A5)  # (G, N, H)
        dB_t = torch.zeros_like(B_t) if ctx.needs_input_grad[3] else None
        dC_t = torch.zeros_like(C_t) if ctx.needs_input_grad[4] else None
        dB5, dC5 = (None if t is None else _operand5(t, G) for t in (dB_t, dC_t))
        S_buf, A_buf, g_buf = (x_t.new_empty(T, *checkpoints.shape[1:]) for _ in range(3))
        carry = None  # exp(Δ_{t1} A) ⊙ g_{t1}: what the next chunk's first step sends back
        for c in reversed(range(checkpoints.shape[0])):
            t0, t1 = c * T, min(L, (c + 1) * T)
            S, A_bar, g = S_buf[: t1 - t0], A_buf[: t1 - t0], g_buf[: t1 - t0]  # (T, b, G, N, H)
            h0 = checkpoints[c]  # (b, G, N, H)
            B_c, C_c, dy_c = _steps(B5, t0, t1), _steps(C5, t0, t1), dy5[t0:t1]
            _scan_chunk(x5[t0:t1], delta5[t0:t1], A5, B_c, h0, S, A_bar)
            if dC5 is not None:
                _add_operand_grad(dC5, _operand_grad(dy_c, S, C_t.dim() > 2), t0, t1)
            torch.mul(dy_c, C_c, out=g)  # (T, b, G, N, H)  direct part C_t y'_t
            if carry is not None:
                g[-1] += carry
            gs, As = g.unbind(0), A_bar.unbind(0)
            for t in range(t1 - t0 - 2, -1, -1):  # adjoint recurrence, backwards in time
                gs[t].addcmul_(As[t + 1], gs[t + 1])
            dx5[t0:t1] = _sum_n(g, B_c)
            if dB5 is not None:
                _add_operand_grad(dB5, _operand_grad(x5[t0:t1], g, B_t.dim() > 2), t0, t1)
            g.mul_(A_bar)  # g_t ⊙ exp(Δ_t A)
            carry = g[0].clone()
            g[1:].mul_(S[:-1])  # X_t = g_t ⊙ exp(Δ_t A) ⊙ h_{t-1}
            g[0].mul_(h0)
            dA5 += torch.mul(g, delta5[t0:t1], out=A_bar).sum((0, 1))  # A_bar is free now: scratch
            torch.sum(torch.mul(g, A5, out=A_bar), -2, keepdim=True, out=ddelta5[t0:t1])
        dx, ddelta = (rearrange(t, "l b d -> b d l").contiguous() for t in (dx_t, ddelta_t))  # (b, d, L)
        dB, dC = (_from_time_major(t) for t in (dB_t, dC_t))
        return dx, ddelta, rearrange(dA5, "g n h -> (g h) n"), dB, dC, None


def _from_time_major(X: Tensor | None) -> Tensor | None:
    """Gradient of a B/C operand back to its caller's layout: (L, b, G, N) -> (b, G, N, L); (d, N) unchanged."""
    if X is None or X.dim() == 2:
        return X
    return rearrange(X, "l b g n -> b g n l").contiguous()


def _add_operand_grad(total5: Tensor, part: Tensor, t0: int, t1: int) -> None:
    """Add a chunk's B/C gradient to a view from :func:`_operand5`: a constant one sums, a time-major one fills."""
    if total5.dim() == 3:
        total5 += part
    else:
        total5[t0:t1] = part


def _chunk_length(b: int, d: int, N: int, L: int) -> int:
    """Steps per chunk so that one (T, b, d, N) buffer holds about ``_CHUNK_ELEMENTS`` values."""
    return max(1, min(L, _CHUNK_ELEMENTS // max(1, b * d * N)))


def selective_scan_torch(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    chunk: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Fast selective scan in plain PyTorch (CPU or GPU); arguments as :func:`selective_scan`.

    Args:
        chunk: steps per chunk (default: sized from b·d·N, see ``_CHUNK_ELEMENTS``); results do not depend on it.
    """
    chunk = chunk or _chunk_length(*u.shape[:2], A.shape[1], u.shape[2])

    def scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
        return _ChunkedScanFn.apply(delta * u, delta, A, B, C, chunk)

    return _run_scan(scan, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


# ---------------------------------------------------------------------------------------------------------
# 3. Compiled CPU path (numba)
# ---------------------------------------------------------------------------------------------------------
def selective_scan_numba(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    chunk: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan compiled with numba (CPU, time-varying B and C); arguments as :func:`selective_scan`.

    Args:
        chunk: steps recomputed at once in the backward (default ``scan_numba.CHUNK``); results do not depend on it.
    """
    module = _numba_module()
    if module is None or u.device.type != "cpu" or B.dim() == 2 or C.dim() == 2:
        raise RuntimeError(
            "selective_scan: backend 'numba_cpu' needs numba (pip install numba), CPU tensors and time-varying "
            "(b, N, L) or (b, G, N, L) B and C; use backend='auto' to fall back to torch_fast"
        )
    chunk = chunk or module.CHUNK

    def scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
        return module.NumbaScanFn.apply(u, delta, A, B, C, chunk)

    return _run_scan(scan, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


# ---------------------------------------------------------------------------------------------------------
# 4. mamba_ssm's CUDA kernel
# ---------------------------------------------------------------------------------------------------------
def selective_scan_mamba_cuda(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """``mamba_ssm``'s fused CUDA selective scan (arguments as :func:`selective_scan`)."""
    fn = _mamba_ssm_scan_fn()
    if fn is None or not u.is_cuda:
        raise RuntimeError(
            "selective_scan: backend 'mamba_ssm_cuda' needs CUDA tensors and an importable mamba_ssm "
            "(pip install 'm2restore[cuda]' on a CUDA machine); use backend='auto' to fall back to torch_fast"
        )
    return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
