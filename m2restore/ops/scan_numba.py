"""Compiled CPU selective scan (numba): the sequential recurrence, vectorised across channels.

One task scans a block of up to ``BLOCK`` channels of one batch element and one B/C group through time. Its
states live in a small (N, channels) array, and every inner loop runs over the block's channels: contiguous,
as long as the block, and free of horizontal sums except the two that B and C's gradients need (they are
shared by the channels of a group). The kernels therefore read u, Δ and dy channel-last (b, L, d) and A as
(N, d); they form Δ·u themselves and write y, du and dΔ straight into (b, d, L) through a (T, channels) tile
per chunk. No (b, d, L, N) tensor is ever materialised: the forward costs less than one ``exp`` pass over
such a tensor.

The backward recomputes each chunk of T steps from a checkpointed state into (T, N, channels) buffers of
the states and of exp(Δ_t A), then runs the adjoint recurrence backwards in time and reads every gradient
off it in the same loop (the equations of ``_ChunkedScanFn`` in ``selective_scan.py``). Each task writes
only its own memory: its channels of du and dΔ, its part of dA (per batch element) and of dB and dC (per
channel block), which the caller sums, so results do not depend on the number of threads.

float32 uses a vectorisable ``exp`` (Cody-Waite range reduction and the Cephes degree-6 polynomial,
relative error < 2.5e-7, tested): ``math.exp`` compiles to a scalar libm call. float64 uses ``math.exp``.
Only time-varying (b, G, N, L) B and C are handled here; everything else takes the PyTorch path. numba is
optional: this module is imported only when it is installed (see ``selective_scan._numba_module``).
Importing it selects numba's "workqueue" threading layer unless one was chosen (NUMBA_THREADING_LAYER):
the OpenMP layer spins against PyTorch's own OpenMP pool and slowed both down 10x or more in our
measurements. That layer must not be entered from two Python threads at once, so kernel launches are
serialised by a lock. Kernels compile on first use (seconds) and are cached on disk.
"""

from __future__ import annotations

import math
import threading

import numba
import numpy as np
import torch
from einops import rearrange
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload
from torch import Tensor

if numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "workqueue"
_LAUNCH = threading.Lock()  # numba's workqueue pool takes one launch at a time
CHUNK = 64  # steps recomputed at once in the backward (buffers of (T, N, BLOCK); 16 and 32 measured no faster)
# Channels per task. Inner loops run over them: LLVM vectorises a loop of unknown length with several vector
# registers per iteration (e.g. 2 x 16 float32 on AVX-512), so shorter blocks fall to the scalar remainder
# (32 channels measured 2x slower than 64; 128 no faster).
BLOCK = 64
_FASTMATH = {"contract", "reassoc", "nsz", "arcp"}  # no 'nnan'/'ninf': NaN and inf propagate as in torch


def fast_exp(x):
    """exp(x): a vectorisable polynomial for float32, ``math.exp`` for float64 (numba-compiled code only)."""
    raise NotImplementedError("fast_exp is only callable from numba-compiled code")


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the int32 ``bits`` (a register move, vectorisable)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


def _fast_exp_f32(x):
    lo, hi, f32 = np.float32(-87.33654), np.float32(88.72283), np.float32
    xc = min(max(x, lo), hi)
    k = np.floor(xc * f32(1.4426950408889634) + f32(0.5))  # x = k ln2 + r, |r| <= ln2 / 2
    r = xc - k * f32(0.693359375) - k * f32(-2.12194440e-4)  # ln2 split in two: k · ln2_hi is exact
    p = f32(1.9875691500e-4) * r + f32(1.3981999507e-3)
    p = ((((p * r + f32(8.3334519073e-3)) * r + f32(4.1665795894e-2)) * r + f32(1.6666665459e-1)) * r) + f32(0.5)
    m = p * r * r + r + f32(1.0)
    m = m * f32(2.0) if k > f32(127.0) else m  # keep 2**k a finite float32 near the top of the range
    e = m * _float32_from_bits((np.int32(min(k, f32(127.0))) + np.int32(127)) << np.int32(23))  # m · 2**k
    e = f32(0.0) if x < lo else e  # underflow (torch gives 0 or a denormal below 1.2e-38)
    e = f32(np.inf) if x > hi else e
    return x if np.isnan(x) else e  # NaN stays NaN


def _fast_exp_f64(x):
    return math.exp(x)


@overload(fast_exp, inline="always", jit_options={"fastmath": _FASTMATH})
def _fast_exp_overload(x):
    return _fast_exp_f32 if x == types.float32 else _fast_exp_f64


@numba.njit(fastmath=_FASTMATH, inline="always")
def _block(task, G, H):
    """Task -> (batch i, group g, block q within the group, channels j0..j1)."""
    per = -(-H // BLOCK)
    i, r = task // (G * per), task % (G * per)
    g, q = r // per, r % per
    j0 = g * H + q * BLOCK
    return i, g, q, j0, min(j0 + BLOCK, (g + 1) * H)


@numba.njit(fastmath=_FASTMATH, inline="always")
def _store_tile(tile, steps, out, i, j0, t0):
    """The first ``steps`` rows of a channel-last tile (T, channels) into out[i, j0:, t0:] of a (b, d, L) array."""
    for w in range(tile.shape[1]):
        row = out[i, j0 + w, t0 : t0 + steps]
        for s in range(steps):
            row[s] = tile[s, w]


@numba.njit(fastmath=_FASTMATH, inline="always")
def _put(block, full, j0):
    """full[:, j0:] = block for a (rows, channels) block of a C-contiguous (rows, d) array, row by row.

    Row slices of a C array are contiguous to numba; a 2-D slice is not, and its assignment compiles to scatters.
    """
    for n in range(block.shape[0]):
        src, dst = block[n], full[n, j0 : j0 + block.shape[1]]
        for w in range(src.shape[0]):
            dst[w] = src[w]


@numba.njit(fastmath=_FASTMATH, inline="always")
def _take(full, j0, block):
    """block = full[:, j0:j0 + channels], the reverse of :func:`_put`."""
    for n in range(block.shape[0]):
        src, dst = full[n, j0 : j0 + block.shape[1]], block[n]
        for w in range(dst.shape[0]):
            dst[w] = src[w]


@numba.njit(parallel=True, cache=True)
def _transpose(src, dst):
    """dst (b, L, d) = src (b, d, L), in 16 x 16 tiles so that both sides stay in cache (2-3x faster than torch)."""
    b, d, L = src.shape
    per = -(-d // 16)  # tiles of channels per batch element
    for task in numba.prange(b * per):
        i, j0 = task // per, task % per * 16
        for t0 in range(0, L, 16):
            for j in range(j0, min(d, j0 + 16)):
                row = src[i, j, t0 : min(L, t0 + 16)]
                for s in range(row.shape[0]):
                    dst[i, t0 + s, j] = row[s]


@numba.njit(parallel=True, fastmath=_FASTMATH, cache=True)
def scan_forward(u, dl, A, B, C, y, checkpoints, last, T):
    """Fill y (b, d, L), checkpoints (b, n_chunks, N, d), last (b, N, d) from u, dl (b, L, d), A (N, d), B, C."""
    b, L, d = u.shape
    G, N = B.shape[1], A.shape[0]
    H = d // G
    for task in numba.prange(b * G * -(-H // BLOCK)):
        i, g, _, j0, j1 = _block(task, G, H)
        nw = j1 - j0
        h = np.zeros((N, nw), u.dtype)  # (N, channels)
        xt, ys = np.empty(nw, u.dtype), np.empty((T, nw), u.dtype)
        for c in range(checkpoints.shape[1]):
            t0, t1 = c * T, min(L, (c + 1) * T)
            _put(h, checkpoints[i, c], j0)
            for s in range(t1 - t0):
                t = t0 + s
                ut, dt, yt = u[i, t, j0:j1], dl[i, t, j0:j1], ys[s]
                for w in range(nw):
                    xt[w] = dt[w] * ut[w]  # Δ_t u_t
                    yt[w] = 0.0
                for n in range(N):
                    bn, cn, hn, An = B[i, g, t, n], C[i, g, t, n], h[n], A[n, j0:j1]
                    for w in range(nw):
                        hw = fast_exp(dt[w] * An[w]) * hn[w] + xt[w] * bn  # exp(Δ_t A) h_{t-1} + Δ_t u_t B_t
                        hn[w] = hw
                        yt[w] += cn * hw  # <C_t, h_t>
            _store_tile(ys, t1 - t0, y, i, j0, t0)
        _put(h, last[i], j0)


@numba.njit(parallel=True, fastmath=_FASTMATH, cache=True)
def scan_backward(u, dl, A, B, C, dy, checkpoints, T, du, ddl, dA_parts, dB_parts, dC_parts):
    """Gradients into du, ddl (b, d, L), dA_parts (b, N, d) and dB_parts, dC_parts (blocks per group, b, G, L, N).

    u, dl, dy are channel-last (b, L, d). dB_parts and dC_parts must be zero; every part is written by one task.
    """
    b, L, d = u.shape
    G, N = B.shape[1], A.shape[0]
    H = d // G
    zero = u.dtype.type(0.0)
    for task in numba.prange(b * G * -(-H // BLOCK)):
        i, g, q, j0, j1 = _block(task, G, H)
        nw = j1 - j0
        hs = np.empty((T + 1, N, nw), u.dtype)  # h_{t-1} and h_t of one chunk
        As = np.empty((T, N, nw), u.dtype)  # exp(Δ_t A) of one chunk
        xs = np.empty((T, nw), u.dtype)  # Δ_t u_t
        dus, dls = np.empty((T, nw), u.dtype), np.empty((T, nw), u.dtype)  # tiles of du and dΔ
        dxt = np.empty(nw, u.dtype)  # d(Δ_t u_t)
        carry = np.zeros((N, nw), u.dtype)  # exp(Δ_{t+1} A) ⊙ g_{t+1}
        dA = np.zeros((N, nw), u.dtype)
        dB, dC = dB_parts[q, i, g], dC_parts[q, i, g]  # (L, N)
        for c in range(checkpoints.shape[1] - 1, -1, -1):
            t0, t1 = c * T, min(L, (c + 1) * T)
            _take(checkpoints[i, c], j0, hs[0])
            for s in range(t1 - t0):  # recompute the chunk's states
                t = t0 + s
                ut, dt, xt = u[i, t, j0:j1], dl[i, t, j0:j1], xs[s]
                for w in range(nw):
                    xt[w] = dt[w] * ut[w]
                for n in range(N):
                    bn, An, Ap, hp, hn = B[i, g, t, n], A[n, j0:j1], As[s, n], hs[s, n], hs[s + 1, n]
                    for w in range(nw):
                        a = fast_exp(dt[w] * An[w])
                        Ap[w] = a
                        hn[w] = a * hp[w] + xt[w] * bn
            for s in range(t1 - t0 - 1, -1, -1):  # adjoint recurrence, backwards in time
                t = t0 + s
                ut, dt, dyt, xt, dlt = u[i, t, j0:j1], dl[i, t, j0:j1], dy[i, t, j0:j1], xs[s], dls[s]
                dxt[:] = zero
                dlt[:] = zero
                for n in range(N):
                    bn, cn, An, Ap, hp, hn = B[i, g, t, n], C[i, g, t, n], A[n, j0:j1], As[s, n], hs[s, n], hs[s + 1, n]
                    cr, dAn = carry[n], dA[n]
                    sC, sB = zero, zero
                    for w in range(nw):
                        gw = dyt[w] * cn + cr[w]  # g_t = dLoss/dh_t
                        sC += dyt[w] * hn[w]
                        sB += gw * xt[w]
                        dxt[w] += gw * bn
                        qw = gw * Ap[w]
                        cr[w] = qw
                        X = qw * hp[w]  # g_t ⊙ exp(Δ_t A) ⊙ h_{t-1}
                        dlt[w] += X * An[w]
                        dAn[w] += X * dt[w]
                    dC[t, n] += sC
                    dB[t, n] += sB
                dut = dus[s]
                for w in range(nw):  # through x = Δ·u
                    dut[w] = dxt[w] * dt[w]
                    dlt[w] += dxt[w] * ut[w]
            _store_tile(dus, t1 - t0, du, i, j0, t0)
            _store_tile(dls, t1 - t0, ddl, i, j0, t0)
        _put(dA, dA_parts[i], j0)


def _set_threads() -> None:
    """Run the kernels on as many threads as PyTorch uses (capped by numba's pool)."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def _channel_last(x: Tensor) -> Tensor:
    """(b, d, L) -> a contiguous (b, L, d) copy, by :func:`_transpose` (call with ``_LAUNCH`` held)."""
    out = x.new_empty(x.shape[0], x.shape[2], x.shape[1])  # (b, L, d)
    _transpose(x.detach().contiguous().numpy(), out.numpy())
    return out


class NumbaScanFn(torch.autograd.Function):
    """(u, Δ, A, B, C) -> (y = the scan of x = Δ·u without D and gate, last state), like ``_ChunkedScanFn`` of Δ·u.

    u, delta: (b, d, L); A: (d, N); B, C: (b, G, N, L) with the same G; float32 or float64, on the CPU.
    """

    @staticmethod
    def forward(ctx, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk: int):
        b, d, L = u.shape
        N = A.shape[1]
        A_c = rearrange(A, "d n -> n d").contiguous()  # (N, d)
        B_t, C_t = (rearrange(X, "b g n l -> b g l n").contiguous() for X in (B, C))  # (b, G, L, N)
        y = u.new_empty(b, d, L)  # (b, d, L)
        checkpoints = u.new_empty(b, -(-L // chunk), N, d)  # (b, n_chunks, N, d)
        last = u.new_empty(b, N, d)  # (b, N, d)
        with _LAUNCH:
            _set_threads()
            u_c, delta_c = _channel_last(u), _channel_last(delta)  # (b, L, d)
            scan_forward(*[t.detach().numpy() for t in (u_c, delta_c, A_c, B_t, C_t, y, checkpoints, last)], chunk)
        ctx.save_for_backward(u_c, delta_c, A_c, B_t, C_t, checkpoints)
        ctx.chunk = chunk
        last = rearrange(last, "b n d -> b d n").contiguous()  # (b, d, N)
        ctx.mark_non_differentiable(last)
        return y, last

    @staticmethod
    def backward(ctx, dy: Tensor, _dlast: Tensor | None):
        u_c, delta_c, A_c, B_t, C_t, checkpoints = ctx.saved_tensors
        b, L, d = u_c.shape
        blocks = -(-(d // B_t.shape[1]) // BLOCK)  # channel blocks per group
        du, ddelta = (u_c.new_empty(b, d, L) for _ in range(2))  # (b, d, L)
        dA_parts = u_c.new_empty(b, *A_c.shape)  # (b, N, d)
        dB_parts, dC_parts = (u_c.new_zeros(blocks, *B_t.shape) for _ in range(2))  # (blocks, b, G, L, N)
        with _LAUNCH:
            _set_threads()
            dy_c = _channel_last(dy)  # (b, L, d)
            arrays = [t.detach().numpy() for t in (u_c, delta_c, A_c, B_t, C_t, dy_c, checkpoints)]
            scan_backward(*arrays, ctx.chunk, *[t.numpy() for t in (du, ddelta, dA_parts, dB_parts, dC_parts)])
        dB, dC = (rearrange(t.sum(0), "b g l n -> b g n l").contiguous() for t in (dB_parts, dC_parts))  # (b, G, N, L)
        return du, ddelta, rearrange(dA_parts.sum(0), "n d -> d n"), dB, dC, None
