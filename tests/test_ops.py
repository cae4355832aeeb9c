"""Selective scan and Mamba mixer: every CPU path against the sequential reference, and checkpoint compatibility."""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from einops import repeat

from m2restore.ops import (
    Mamba,
    scan_backend,
    selective_scan,
    selective_scan_numba,
    selective_scan_ref,
    selective_scan_torch,
)

ss = importlib.import_module("m2restore.ops.selective_scan")  # the module (the package re-exports the function)
HAS_NUMBA = importlib.util.find_spec("numba") is not None
FAST_PATHS = [
    pytest.param(selective_scan_torch, id="torch_fast"),
    pytest.param(selective_scan_numba, id="numba_cpu", marks=pytest.mark.skipif(not HAS_NUMBA, reason="no numba")),
]
FIXTURES = Path(__file__).parent / "fixtures"
F64 = torch.float64


def make_inputs(
    b: int = 2,
    d: int = 8,
    L: int = 13,
    N: int = 4,
    B_layout: str = "var",
    C_layout: str = "var",
    dtype: torch.dtype = F64,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random scan inputs that require grad; layouts "const" (d, N), "var" (b, N, L) or "gK" (b, K, N, L)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=F64)

    def operand(layout: str) -> torch.Tensor:
        if layout == "const":
            return rand(d, N)
        if layout == "var":
            return rand(b, N, L)
        return rand(b, int(layout[1:]), N, L)

    raw = {
        "u": rand(b, d, L),
        "delta": rand(b, d, L) * 0.5,
        "A": -torch.rand(d, N, generator=g, dtype=F64) * 3,
        "B": operand(B_layout),
        "C": operand(C_layout),
        "D": rand(d),
        "z": rand(b, d, L),
        "delta_bias": rand(d) * 0.3,
    }
    return {k: v.to(dtype).requires_grad_() for k, v in raw.items()}


def run(fn, inp: dict[str, torch.Tensor], use: tuple[str, ...], softplus: bool, **kwargs) -> tuple:
    """Call a scan with only the optional arguments in ``use``; return (out, last_state)."""
    opt = {k: inp[k] for k in ("D", "z", "delta_bias") if k in use}
    return fn(
        inp["u"],
        inp["delta"],
        inp["A"],
        inp["B"],
        inp["C"],
        **opt,
        delta_softplus=softplus,
        return_last_state=True,
        **kwargs,
    )


def grads(out: torch.Tensor, inp: dict[str, torch.Tensor], names: list[str]) -> list[torch.Tensor]:
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    return list(torch.autograd.grad((out * weight).sum(), [inp[k] for k in names]))


def assert_paths_agree(fn, inp: dict, use: tuple[str, ...], softplus: bool, chunk: int | None, atol: float) -> None:
    """Values, last state and the gradients of all inputs of ``fn`` equal those of the reference."""
    names = ["u", "delta", "A", "B", "C", *use]
    out_ref, last_ref = run(selective_scan_ref, inp, use, softplus)
    out, last = run(fn, inp, use, softplus, chunk=chunk)
    torch.testing.assert_close(out, out_ref, atol=atol, rtol=atol)
    torch.testing.assert_close(last, last_ref, atol=atol, rtol=atol)
    for name, g, g_ref in zip(names, grads(out, inp, names), grads(out_ref, inp, names)):
        torch.testing.assert_close(g, g_ref, atol=atol, rtol=atol, msg=lambda m, n=name: f"grad {n}: {m}")


# --- the reference itself --------------------------------------------------------------------------------
def test_reference_matches_closed_form() -> None:
    """y_t = sum_{s<=t} <C_t, exp(A sum_{s<r<=t} Δ_r) Δ_s B_s u_s> + D u_t, computed without any recurrence."""
    inp = {k: v.detach() for k, v in make_inputs(b=1, d=3, L=6, N=2, B_layout="var", C_layout="g1").items()}
    u, A, B, C, D = inp["u"], inp["A"], inp["B"], inp["C"][:, 0], inp["D"]
    delta = F.softplus(inp["delta"] + inp["delta_bias"][:, None])
    out, last = selective_scan_ref(
        u, inp["delta"], A, B, inp["C"], D, delta_bias=inp["delta_bias"], delta_softplus=True, return_last_state=True
    )
    L = u.shape[-1]
    expected = torch.zeros_like(u)
    h_last = torch.zeros(1, 3, 2, dtype=F64)
    for t in range(L):
        for s in range(t + 1):
            decay = torch.exp(A * delta[0, :, s + 1 : t + 1].sum(-1, keepdim=True))  # (d, N)
            contrib = decay * (delta[0, :, s] * u[0, :, s])[:, None] * B[0, :, s]  # (d, N)
            expected[0, :, t] += contrib @ C[0, :, t]
            if t == L - 1:
                h_last[0] += contrib
    expected += D[:, None] * u
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(last, h_last)


# --- fast paths vs reference, float64 --------------------------------------------------------------------
LAYOUTS = ["const", "var", "g2"]


def skip_constant_for_numba(fn, *layouts: str) -> None:
    if fn is selective_scan_numba and "const" in layouts:
        pytest.skip("numba_cpu takes time-varying B and C only (auto dispatch sends the rest to torch_fast)")


@pytest.mark.parametrize("fn", FAST_PATHS)
@pytest.mark.parametrize("B_layout", LAYOUTS + ["g4"])
@pytest.mark.parametrize("C_layout", LAYOUTS)
@pytest.mark.parametrize(
    "use,softplus", [(("D", "z", "delta_bias"), True), ((), False), (("delta_bias",), False), (("D",), True)]
)
def test_fast_path_matches_reference(fn, B_layout: str, C_layout: str, use: tuple[str, ...], softplus: bool) -> None:
    skip_constant_for_numba(fn, B_layout, C_layout)
    inp = make_inputs(B_layout=B_layout, C_layout=C_layout)
    assert_paths_agree(fn, inp, use, softplus, chunk=4, atol=1e-10)  # 13 steps: chunks of 4, 4, 4, 1


@pytest.mark.parametrize("fn", FAST_PATHS)
@pytest.mark.parametrize("L,chunk", [(1, None), (1, 4), (2, 1), (7, None), (7, 3), (16, 16), (17, 5), (31, 8)])
def test_fast_path_sequence_lengths(fn, L: int, chunk: int | None) -> None:
    inp = make_inputs(L=L, B_layout="var", C_layout="g2", seed=L)
    assert_paths_agree(fn, inp, ("D", "z", "delta_bias"), True, chunk=chunk, atol=1e-10)


@pytest.mark.parametrize("fn", FAST_PATHS)
@pytest.mark.parametrize("d,B_layout", [(150, "var"), (140, "g2")])
def test_fast_path_wide_channels(fn, d: int, B_layout: str) -> None:
    """More channels per group than one numba task takes (64), and not a multiple of it: 150 = 64 + 64 + 22."""
    inp = make_inputs(b=2, d=d, L=9, N=3, B_layout=B_layout, C_layout="var", seed=d)
    assert_paths_agree(fn, inp, ("D", "z", "delta_bias"), True, chunk=4, atol=1e-10)


@pytest.mark.parametrize("fn", FAST_PATHS)
def test_nan_propagates_like_reference(fn) -> None:
    """A NaN input poisons the same outputs and gradients as in the reference: its channel from its step on."""
    inp = make_inputs(L=11)
    with torch.no_grad():
        inp["u"][1, 3, 6] = float("nan")
    out_ref, _ = run(selective_scan_ref, inp, ("D",), True)
    out, _ = run(fn, inp, ("D",), True, chunk=4)
    assert out[1, 3, 6:].isnan().all() and out.isnan().sum() == 5
    assert torch.equal(out.isnan(), out_ref.isnan())
    for g, g_ref in zip(grads(out, inp, ["u", "delta", "A"]), grads(out_ref, inp, ["u", "delta", "A"])):
        assert torch.equal(g.isnan(), g_ref.isnan())


@pytest.mark.skipif(not HAS_NUMBA, reason="no numba")
def test_numba_results_do_not_depend_on_thread_count() -> None:
    """Every numba task writes its own memory and partial sums are added in a fixed order: bitwise equal results."""
    inp = {k: v.detach().float().requires_grad_() for k, v in make_inputs(b=2, d=140, L=33, B_layout="g2").items()}
    names = ["u", "delta", "A", "B", "C"]
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out, last = run(selective_scan_numba, inp, (), True, chunk=8)
            results.append([out, last, *grads(out, inp, names)])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("fn", FAST_PATHS)
def test_results_do_not_depend_on_chunk_size(fn) -> None:
    inp = {k: v.detach() for k, v in make_inputs(L=29).items()}
    outs = [run(fn, inp, ("D", "z"), True, chunk=c)[0] for c in (1, 3, 7, 29, 64)]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], atol=1e-12, rtol=1e-12)
    assert ss._chunk_length(2, 768, 16, 4096) >= 1 and ss._chunk_length(1, 8, 4, 3) == 3


@pytest.mark.parametrize("fn", FAST_PATHS)
def test_gradcheck_fast_path(fn) -> None:
    inp = make_inputs(b=1, d=4, L=5, N=2, B_layout="var", C_layout="g2", seed=3)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]

    def scan(*args: torch.Tensor) -> torch.Tensor:
        u, delta, A, B, C, D, z, bias = args
        return fn(u, delta, A, B, C, D, z, bias, delta_softplus=True, chunk=2)

    assert torch.autograd.gradcheck(scan, [inp[k] for k in names])


def test_gradcheck_constant_operands() -> None:
    inp = make_inputs(b=2, d=2, L=4, N=3, B_layout="const", C_layout="const", seed=4)

    def fn(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
        return selective_scan_torch(u, delta, A, B, C, chunk=3)

    assert torch.autograd.gradcheck(fn, [inp[k] for k in ("u", "delta", "A", "B", "C")])


def test_only_some_inputs_require_grad() -> None:
    inp = make_inputs()
    for k in ("A", "B", "C"):
        inp[k] = inp[k].detach()
    out = selective_scan_torch(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], chunk=5)
    out_ref = selective_scan_ref(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"])
    for g, g_ref in zip(grads(out, inp, ["u", "delta"]), grads(out_ref, inp, ["u", "delta"])):
        torch.testing.assert_close(g, g_ref)


# --- dtypes ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", FAST_PATHS)
def test_float32_agrees_with_float64_reference(fn) -> None:
    inp64 = make_inputs(b=2, d=16, L=40, N=8)
    inp32 = {k: v.detach().float().requires_grad_() for k, v in inp64.items()}
    use = ("D", "z", "delta_bias")
    out64, _ = run(selective_scan_ref, inp64, use, True)
    out32, last32 = run(fn, inp32, use, True, chunk=16)
    assert out32.dtype == last32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, atol=1e-4, rtol=1e-4)
    names = ["u", "delta", "A", "B", "C", *use]
    for g32, g64 in zip(grads(out32, inp32, names), grads(out64, inp64, names)):
        torch.testing.assert_close(g32.double(), g64, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("fn", FAST_PATHS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_computed_in_float32(fn, dtype: torch.dtype) -> None:
    """Half inputs: every path upcasts to float32; output in the input dtype, last state in float32."""
    inp = make_inputs(b=2, d=8, L=21, N=4, dtype=dtype)
    inp["A"] = inp["A"].detach().float().requires_grad_()  # mamba_ssm keeps A in float32
    use = ("D", "z", "delta_bias")
    out_ref, last_ref = run(selective_scan_ref, inp, use, True)
    out, last = run(fn, inp, use, True, chunk=8)
    assert out.dtype == dtype and last.dtype == torch.float32 and last_ref.dtype == torch.float32
    torch.testing.assert_close(last, last_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.float(), out_ref.float(), atol=1e-2, rtol=1e-2)
    exact = run(selective_scan_ref, {k: v.detach().float() for k, v in inp.items()}, use, True)[0]
    torch.testing.assert_close(out.float(), exact, atol=1e-2, rtol=1e-2)  # only the final rounding differs
    g_u, g_A = grads(out, inp, ["u", "A"])
    assert g_u.dtype == dtype and g_A.dtype == torch.float32


# --- dispatch and errors ---------------------------------------------------------------------------------
def test_backend_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    inp = {k: v.detach() for k, v in make_inputs(L=6).items()}
    cpu_backend = "numba_cpu" if HAS_NUMBA else "torch_fast"
    assert scan_backend(inp["u"]) == cpu_backend
    args = (inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"])
    torch.testing.assert_close(selective_scan(*args, backend="reference"), selective_scan_ref(*args))
    torch.testing.assert_close(selective_scan(*args), selective_scan_ref(*args))
    with pytest.raises(RuntimeError, match="mamba_ssm"):
        selective_scan(*args, backend="mamba_ssm_cuda")
    with pytest.raises(ValueError, match="backend"):
        selective_scan(*args, backend="triton")
    # A constant B goes to torch_fast under "auto"; numba_cpu refuses it when asked by name.
    const_B = (inp["u"], inp["delta"], inp["A"], inp["B"][0, :, 0].expand(8, 4).contiguous(), inp["C"])
    torch.testing.assert_close(selective_scan(*const_B), selective_scan_ref(*const_B))
    with pytest.raises(RuntimeError, match="time-varying"):
        selective_scan(*const_B, backend="numba_cpu")
    # CUDA tensors go to mamba_ssm's kernel only when it imports, and never in float64.
    cuda = SimpleNamespace(type="cuda")
    fake_cuda = SimpleNamespace(is_cuda=True, dtype=torch.float32, device=cuda)
    monkeypatch.setattr(ss, "_mamba_ssm_scan_fn", lambda: None)
    assert scan_backend(fake_cuda) == "torch_fast"
    monkeypatch.setattr(ss, "_mamba_ssm_scan_fn", lambda: selective_scan_ref)
    assert scan_backend(fake_cuda) == "mamba_ssm_cuda"
    assert scan_backend(SimpleNamespace(is_cuda=True, dtype=F64, device=cuda)) == "torch_fast"
    assert scan_backend(inp["u"]) == cpu_backend
    # Without numba the CPU takes torch_fast.
    monkeypatch.setattr(ss, "_numba_module", lambda: None)
    assert scan_backend(inp["u"]) == "torch_fast"


@pytest.mark.skipif(not HAS_NUMBA, reason="no numba")
def test_numba_path_from_several_python_threads() -> None:
    """Concurrent calls (e.g. a threaded server) give the same results as one after the other."""
    inputs = [{k: v.detach().float() for k, v in make_inputs(L=50, seed=s).items()} for s in range(4)]

    def scan(inp: dict[str, torch.Tensor]) -> torch.Tensor:
        return selective_scan_numba(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["z"])

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(scan, inputs * 3))
    for inp, out in zip(inputs * 3, results):
        assert torch.equal(out, scan(inp))


@pytest.mark.skipif(not HAS_NUMBA, reason="no numba")
def test_numba_float32_exp_matches_torch() -> None:
    """The vectorisable float32 exp of the compiled path: ~1 ulp in range, 0 below, inf above, NaN kept."""
    import numba
    import numpy as np

    sn = importlib.import_module("m2restore.ops.scan_numba")

    @numba.njit
    def exp32(x):
        out = np.empty_like(x)
        for n in range(x.shape[0]):
            out[n] = sn.fast_exp(x[n])
        return out

    x = np.concatenate([np.linspace(-87.3, 88.7, 40001), [-1e-30, 0.0, 1e-30, 88.5, 88.72]]).astype(np.float32)
    got, want = torch.from_numpy(exp32(x)).double(), torch.exp(torch.from_numpy(x).double())
    assert ((got - want).abs() / want).max() < 2.5e-7
    edge = np.array([-200.0, -88.0, 89.0, np.inf, -np.inf, np.nan], np.float32)
    got = exp32(edge)
    assert (got[:2] < 1.2e-38).all() and np.isinf(got[2:4]).all() and got[4] == 0 and np.isnan(got[5])


def test_shape_errors_name_the_problem() -> None:
    inp = {k: v.detach() for k, v in make_inputs(L=6).items()}
    with pytest.raises(ValueError, match="B has shape"):
        selective_scan(inp["u"], inp["delta"], inp["A"], inp["B"][:, :, :5], inp["C"])
    with pytest.raises(ValueError, match="G dividing"):
        selective_scan(inp["u"], inp["delta"], inp["A"], inp["B"], torch.randn(2, 3, 4, 6, dtype=F64))
    with pytest.raises(NotImplementedError, match="complex"):
        selective_scan(inp["u"], inp["delta"], inp["A"].to(torch.complex128), inp["B"], inp["C"])


# --- Mamba mixer ------------------------------------------------------------------------------------------
def test_mamba_state_dict_matches_official_shapes() -> None:
    expected = json.loads((FIXTURES / "mamba_d384_state_dict_shapes.json").read_text())
    sd = Mamba(d_model=384, d_state=16, d_conv=4, expand=2).state_dict()
    assert {k: list(v.shape) for k, v in sd.items()} == expected
    assert sum(v.numel() for v in sd.values()) == 963_840


def test_mamba_initialisation() -> None:
    torch.manual_seed(0)
    m = Mamba(d_model=40, dt_min=0.01, dt_max=0.05, dtype=F64)
    assert m.d_inner == 80 and m.dt_rank == math.ceil(40 / 16) == 3
    assert m.A_log.dtype == m.D.dtype == torch.float32 and m.in_proj.weight.dtype == F64
    torch.testing.assert_close(m.A_log, torch.log(repeat(torch.arange(1.0, 17.0), "n -> d n", d=80)))
    torch.testing.assert_close(m.D, torch.ones(80))
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 0.01 - 1e-9 and dt.max() <= 0.05 + 1e-9
    assert m.dt_proj.weight.abs().max() <= 3**-0.5
    assert m.dt_proj.bias._no_reinit and m.A_log._no_weight_decay and m.D._no_weight_decay
    assert Mamba(16, dt_init="constant").dt_proj.weight.unique().numel() == 1
    with pytest.raises(ValueError, match="dt_init"):
        Mamba(16, dt_init="xavier")


def mamba_from_scratch(m: Mamba, x: torch.Tensor) -> torch.Tensor:
    """mamba_ssm.Mamba's non-fused forward, written out with plain torch ops and the sequential reference scan."""
    E, R, N = m.d_inner, m.dt_rank, m.d_state
    xz = F.linear(x, m.in_proj.weight, m.in_proj.bias)  # (B, L, 2E)
    xs, z = xz[..., :E].transpose(1, 2), xz[..., E:].transpose(1, 2)  # (B, E, L) each
    xs = F.pad(xs, (m.d_conv - 1, 0))  # causal: left padding only
    xs = F.silu(F.conv1d(xs, m.conv1d.weight, m.conv1d.bias, groups=E))  # (B, E, L)
    proj = F.linear(xs.transpose(1, 2), m.x_proj.weight)  # (B, L, R + 2N)
    dt = F.linear(proj[..., :R], m.dt_proj.weight).transpose(1, 2)  # (B, E, L)
    B, C = proj[..., R : R + N].transpose(1, 2), proj[..., R + N :].transpose(1, 2)  # (B, N, L)
    A = -torch.exp(m.A_log.to(x.dtype))
    y = selective_scan_ref(xs, dt, A, B, C, m.D, z, m.dt_proj.bias, delta_softplus=True)  # (B, E, L)
    return F.linear(y.transpose(1, 2), m.out_proj.weight, m.out_proj.bias)  # (B, L, D)


@pytest.mark.parametrize("numba_off", [False, True], ids=["auto", "torch_fast"])
@pytest.mark.parametrize("L,bias", [(1, False), (3, True), (37, False)])
def test_mamba_forward_matches_from_scratch_composition(
    L: int, bias: bool, numba_off: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if numba_off:
        monkeypatch.setattr(ss, "_numba_module", lambda: None)
    torch.manual_seed(L)
    m = Mamba(d_model=24, d_state=8, bias=bias, dtype=F64)
    x = torch.randn(2, L, 24, dtype=F64, requires_grad=True)
    out, expected = m(x), mamba_from_scratch(m, x)
    assert out.shape == x.shape and m.path(x) == ("torch_fast" if numba_off or not HAS_NUMBA else "numba_cpu")
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=1e-10)
    g, g_ref = torch.autograd.grad(out.sum(), x), torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(g, g_ref, atol=1e-10, rtol=1e-10)


def test_mamba_backward_reaches_every_parameter() -> None:
    m = Mamba(d_model=16, d_state=4, bias=True)
    m(torch.randn(2, 11, 16)).square().mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_mamba_weight_round_trip_is_exact() -> None:
    torch.manual_seed(1)
    src, dst = Mamba(d_model=32), Mamba(d_model=32)
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    dst.load_state_dict(torch.load(buf, weights_only=True), strict=True)
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert torch.equal(a, b), k
    x = torch.randn(1, 9, 32)
    assert torch.equal(src(x), dst(x))
    with pytest.raises(NotImplementedError, match="decoding"):
        src(x, inference_params=object())


def test_mamba_loads_state_dict_written_with_official_layout() -> None:
    """A state dict built only from the official names and shapes (as saved by mamba_ssm) loads strictly."""
    shapes = json.loads((FIXTURES / "mamba_d384_state_dict_shapes.json").read_text())
    g = torch.Generator().manual_seed(0)
    official = {k: torch.randn(*s, generator=g) for k, s in shapes.items()}
    m = Mamba(d_model=384)
    m.load_state_dict(official, strict=True)
    assert all(torch.equal(m.state_dict()[k], v) for k, v in official.items())
