"""Compiled CPU selective scan (numba): the sequential recurrence, one channel per task.

The whole scan of one channel (b, d) runs in a compiled loop with its N states in a small local array, so
no (b, d, L, N) tensor is ever materialised: the forward costs about one ``exp`` pass over such a tensor.
The backward recomputes each chunk of T steps from a checkpointed state into a T x N buffer that stays
in L1, then runs the adjoint recurrence in reverse (the same equations as ``_ChunkedScanFn`` in
``selective_scan.py``). Gradients that sum over channels (B, C) or over the batch (A) are accumulated per
worker and added up afterwards, so workers never write to the same memory.

float32 uses a vectorisable ``exp`` (Cody-Waite range reduction and the Cephes degree-6 polynomial,
relative error < 2.5e-7, tested): ``math.exp`` compiles to a scalar libm call, which made the forward about
3x slower here. float64 uses ``math.exp``. Only time-varying (b, G, N, L) B and C are handled here;
everything else takes the PyTorch path. numba is optional: this module is imported only when it is
installed (see ``selective_scan._numba_module``). Importing it selects numba's "workqueue" threading layer
unless one was chosen (NUMBA_THREADING_LAYER): the OpenMP layer spins against PyTorch's own OpenMP pool
and slowed both down 10x or more in our measurements. That layer must not be entered from two Python threads
at once, so kernel launches are serialised by a lock. Kernels compile on first use (seconds) and are cached
on disk.
"""

from __future__ import annotations

import math
import threading

import numba
import numpy as np
import torch
from einops import rearrange
from numba import types
from numba.extending import overload
from torch import Tensor

if numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "workqueue"
_LAUNCH = threading.Lock()  # numba's workqueue pool takes one launch at a time
CHUNK = 64  # steps recomputed at once in the backward: two T x N buffers per worker, in L1
_FASTMATH = {"contract", "reassoc", "nsz", "arcp"}  # no 'nnan'/'ninf': NaN and inf propagate as in torch


def exp_parts(x):
    """exp(x) as (m, k) with exp(x) = m · 2**k; float32: polynomial (vectorisable), float64: (math.exp(x), 0)."""
    raise NotImplementedError("exp_parts is only callable from numba-compiled code")


def pow2(k, like):
    """2**k for an int32 array ``k``, as a new array of floats of the dtype of the scalar ``like``."""
    raise NotImplementedError("pow2 is only callable from numba-compiled code")


def _exp_parts_f32(x):
    lo, hi, f32 = np.float32(-87.33654), np.float32(88.72283), np.float32
    xc = min(max(x, lo), hi)
    k = np.floor(xc * f32(1.4426950408889634) + f32(0.5))  # x = k ln2 + r, |r| <= ln2 / 2
    r = xc - k * f32(0.693359375) - k * f32(-2.12194440e-4)  # ln2 split in two: k · ln2_hi is exact
    p = f32(1.9875691500e-4) * r + f32(1.3981999507e-3)
    p = ((((p * r + f32(8.3334519073e-3)) * r + f32(4.1665795894e-2)) * r + f32(1.6666665459e-1)) * r) + f32(0.5)
    m = p * r * r + r + f32(1.0)
    m = f32(0.0) if x < lo else m  # underflow (torch gives 0 or a denormal below 1.2e-38)
    m = np.inf if x > hi else m
    m = m * f32(2.0) if k > f32(127.0) else m  # keep 2**k a finite float32 near the top of the range
    return (x if np.isnan(x) else m), np.int32(min(k, f32(127.0)))  # NaN stays NaN


def _exp_parts_f64(x):
    return math.exp(x), np.int32(0)


@overload(exp_parts, inline="always", jit_options={"fastmath": _FASTMATH})
def _exp_parts_overload(x):
    return _exp_parts_f32 if x == types.float32 else _exp_parts_f64


def _pow2_f32(k, like):
    # The bits of the float32 2**k. A fresh array (not a reused buffer): LLVM then knows that it aliases nothing
    # and vectorises the loops that read it (measured 1.5x faster for the whole kernel).
    return ((k + np.int32(127)) << np.int32(23)).view(np.float32)


def _pow2_f64(k, like):
    return np.ones(k.shape[0], np.float64)  # float64 exp_parts is exact: k is always 0


@overload(pow2, inline="always")
def _pow2_overload(k, like):
    return _pow2_f32 if like == types.float32 else _pow2_f64


@numba.njit(parallel=True, fastmath=_FASTMATH, cache=True)
def scan_forward(x, dl, A, B, C, y, checkpoints, last, T):
    """Fill y (b, d, L), checkpoints (b, d, n_chunks, N), last (b, d, N) from x, dl (b, d, L), A (d, N), B, C."""
    b, d, L = x.shape
    N, H = A.shape[1], d // B.shape[1]
    for row in numba.prange(b * d):
        i, j = row // d, row % d
        g = j // H
        h, m = np.zeros(N, x.dtype), np.empty(N, x.dtype)
        k = np.empty(N, np.int32)
        for c in range(checkpoints.shape[2]):
            checkpoints[i, j, c] = h
            for t in range(c * T, min(L, (c + 1) * T)):
                dt, xt = dl[i, j, t], x[i, j, t]
                for n in range(N):
                    m[n], k[n] = exp_parts(dt * A[j, n])
                scale = pow2(k, dt)
                acc = x.dtype.type(0.0)
                for n in range(N):
                    h[n] = m[n] * scale[n] * h[n] + xt * B[i, g, t, n]  # exp(Δ_t A) h_{t-1} + Δ_t u_t B_t
                    acc += C[i, g, t, n] * h[n]
                y[i, j, t] = acc
        last[i, j] = h


@numba.njit(parallel=True, fastmath=_FASTMATH, cache=True)
def scan_backward(x, dl, A, B, C, dy, checkpoints, T, dx, ddl, dA_parts, dB_parts, dC_parts):
    """Gradients. Worker p takes a block of rows and adds into dA_parts[p] (d, N), dB_parts[p], dC_parts[p]."""
    b, d = x.shape[:2]
    P = dA_parts.shape[0]
    for p in numba.prange(P):
        dA, dB, dC = dA_parts[p], dB_parts[p], dC_parts[p]
        _backward_rows(x, dl, A, B, C, dy, checkpoints, T, dx, ddl, dA, dB, dC, p * b * d // P, (p + 1) * b * d // P)


@numba.njit(fastmath=_FASTMATH, inline="always")
def _backward_rows(x, dl, A, B, C, dy, checkpoints, T, dx, ddl, dA, dB, dC, r0, r1):
    """Backward of rows r0..r1 of (b·d) into one worker's dA (d, N), dB and dC (b, G, L, N)."""
    d, L = x.shape[1:]
    N, H = A.shape[1], d // B.shape[1]
    n_chunks = checkpoints.shape[2]
    hs = np.empty((T + 1, N), x.dtype)  # h_{t-1} and h_t of one chunk
    As = np.empty((T, N), x.dtype)  # exp(Δ_t A) of one chunk
    carry = np.empty(N, x.dtype)
    k = np.empty(N, np.int32)
    for row in range(r0, r1):
        i, j = row // d, row % d
        g = j // H
        carry[:] = 0.0  # exp(Δ_{t+1} A) ⊙ g_{t+1}
        for c in range(n_chunks - 1, -1, -1):
            t0, t1 = c * T, min(L, (c + 1) * T)
            hs[0] = checkpoints[i, j, c]
            for t in range(t0, t1):  # recompute the chunk's states
                s = t - t0
                dt, xt = dl[i, j, t], x[i, j, t]
                for n in range(N):
                    As[s, n], k[n] = exp_parts(dt * A[j, n])
                scale = pow2(k, dt)
                for n in range(N):
                    As[s, n] *= scale[n]
                    hs[s + 1, n] = As[s, n] * hs[s, n] + xt * B[i, g, t, n]
            for t in range(t1 - 1, t0 - 1, -1):  # adjoint recurrence, backwards in time
                s = t - t0
                dyt, dt, xt = dy[i, j, t], dl[i, j, t], x[i, j, t]
                sdx = x.dtype.type(0.0)
                sdl = x.dtype.type(0.0)
                for n in range(N):
                    gn = dyt * C[i, g, t, n] + carry[n]  # g_t = dLoss/dh_t
                    dC[i, g, t, n] += dyt * hs[s + 1, n]
                    dB[i, g, t, n] += gn * xt
                    sdx += gn * B[i, g, t, n]
                    q = gn * As[s, n]
                    X = q * hs[s, n]  # g_t ⊙ exp(Δ_t A) ⊙ h_{t-1}
                    sdl += X * A[j, n]
                    dA[j, n] += X * dt
                    carry[n] = q
                dx[i, j, t] = sdx
                ddl[i, j, t] = sdl


def _set_threads() -> int:
    """Run the kernels on as many threads as PyTorch uses (capped by numba's pool); returns that number."""
    workers = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(workers)
    return workers


class NumbaScanFn(torch.autograd.Function):
    """Same contract as ``_ChunkedScanFn``: (x = Δ·u, Δ, A, B, C) -> (y without D and gate, last state).

    x, delta: (b, d, L); A: (d, N); B, C: (b, G, N, L) with the same G; float32 or float64, on the CPU.
    """

    @staticmethod
    def forward(ctx, x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk: int):
        b, d, L = x.shape
        N = A.shape[1]
        x, delta, A = x.contiguous(), delta.contiguous(), A.contiguous()
        B_t, C_t = (rearrange(X, "b g n l -> b g l n").contiguous() for X in (B, C))  # (b, G, L, N)
        y = x.new_empty(b, d, L)  # (b, d, L)
        checkpoints = x.new_empty(b, d, -(-L // chunk), N)  # (b, d, n_chunks, N)
        last = x.new_empty(b, d, N)  # (b, d, N)
        with _LAUNCH:
            _set_threads()
            scan_forward(*[t.detach().numpy() for t in (x, delta, A, B_t, C_t, y, checkpoints, last)], chunk)
        ctx.save_for_backward(x, delta, A, B_t, C_t, checkpoints)
        ctx.chunk = chunk
        ctx.mark_non_differentiable(last)
        return y, last

    @staticmethod
    def backward(ctx, dy: Tensor, _dlast: Tensor | None):
        x, delta, A, B_t, C_t, checkpoints = ctx.saved_tensors
        dx, ddelta = torch.empty_like(x), torch.empty_like(x)
        with _LAUNCH:
            P = _set_threads()
            dA_parts = x.new_zeros(P, *A.shape)  # (P, d, N)
            dB_parts, dC_parts = (x.new_zeros(P, *B_t.shape) for _ in range(2))  # (P, b, G, L, N)
            arrays = [t.detach().numpy() for t in (x, delta, A, B_t, C_t, dy.contiguous(), checkpoints)]
            grads = [t.numpy() for t in (dx, ddelta, dA_parts, dB_parts, dC_parts)]
            scan_backward(*arrays, ctx.chunk, *grads)
        dB, dC = (rearrange(t.sum(0), "b g l n -> b g n l").contiguous() for t in (dB_parts, dC_parts))  # (b, G, N, L)
        return dx, ddelta, dA_parts.sum(0), dB, dC, None
