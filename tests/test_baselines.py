"""PromptIR and AdaIR are checkpoint-exact: parameter counts, state-dict keys and shapes equal the official models'
(fixtures read from the official classes), released checkpoint formats load, and the pieces agree with readable
reference formulas (LayerNorm, MDTA, prompt mixing, AdaIR's frequency mask, padding)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from m2restore.models.adair import AdaIR, AdaIRConfig, FreModule
from m2restore.models.base import count_parameters
from m2restore.models.checkpoints import CheckpointError, load_official_checkpoint, read_state_dict
from m2restore.models.promptir import PromptGenBlock
from m2restore.models.restormer_blocks import Attention, LayerNorm
from m2restore.registry import build_model

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL = {"promptir": 35_592_263, "adair": 28_784_824}  # parameters of the official classes at their defaults


@pytest.fixture(scope="module")
def default_models():
    torch.manual_seed(0)
    return {name: build_model(name) for name in OFFICIAL}


# ---------------------------------------------------------------------------------------------------------------
# Exact architecture of the default presets
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(OFFICIAL))
def test_default_parameter_count_equals_official(default_models, name):
    assert sum(p.numel() for p in default_models[name].parameters()) == OFFICIAL[name]


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_state_dict_keys_and_shapes_equal_official(default_models, name):
    expected = json.loads((FIXTURES / f"{name}_state_dict_shapes.json").read_text())
    ours = {k: list(v.shape) for k, v in default_models[name].state_dict().items()}
    missing, extra = sorted(set(expected) - set(ours)), sorted(set(ours) - set(expected))
    assert not missing and not extra, f"missing {missing[:10]}, unexpected {extra[:10]}"
    wrong = {k: (ours[k], expected[k]) for k in expected if ours[k] != expected[k]}
    assert not wrong, f"shape mismatches (ours, official): {wrong}"
    assert sum(torch.Size(s).numel() for s in expected.values()) == OFFICIAL[name]


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_default_presets_train_every_parameter_like_the_official_classes(default_models, name):
    assert count_parameters(default_models[name], trainable=True) == OFFICIAL[name]


def test_freeze_unused_freezes_only_layers_without_gradient():
    frozen = {k for k, p in build_model("promptir", freeze_unused=True).named_parameters() if not p.requires_grad}
    unused = {f"chnl_reduce{i}.weight" for i in (1, 2, 3)} | {f"reduce_noise_channel_{i}.weight" for i in (1, 2, 3)}
    assert frozen == unused
    frozen = {k for k, p in build_model("adair", freeze_unused=True).named_parameters() if not p.requires_grad}
    names = ("conv.weight", "score_gen.weight", "score_gen.bias", "rate_conv.0.weight", "rate_conv.2.weight")
    expected = {f"fre{i}.{name}" for i in (1, 2, 3) for name in names}
    assert frozen == expected


# ---------------------------------------------------------------------------------------------------------------
# Checkpoint formats
# ---------------------------------------------------------------------------------------------------------------
def _pair(name: str, **overrides):
    torch.manual_seed(1)
    source = build_model(name, **overrides).eval()
    torch.manual_seed(2)
    target = build_model(name, **overrides).eval()
    return source, target


def _assert_same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("layout", ["plain", "lightning", "dataparallel", "lightning_dataparallel", "basicsr"])
def test_official_checkpoint_formats_load_strictly(layout, tmp_path):
    source, target = _pair("adair_tiny", unused_layers=True)
    state = source.state_dict()
    blob = {
        "plain": state,
        "lightning": {"epoch": 149, "global_step": 1000, "pytorch-lightning_version": "2.0.1",
                      "state_dict": {f"net.{k}": v for k, v in state.items()},
                      "optimizer_states": [{"state": {}, "param_groups": [{"lr": 2e-4, "params": [0, 1]}]}],
                      "lr_schedulers": [{"base_lrs": [2e-4], "last_epoch": 149}], "loops": {}, "callbacks": {}},
        "dataparallel": {f"module.{k}": v for k, v in state.items()},
        "lightning_dataparallel": {"state_dict": {f"net.module.{k}": v for k, v in state.items()}},
        "basicsr": {"params": state},
    }[layout]
    path = tmp_path / "weights.ckpt"
    torch.save(blob, path)
    assert load_official_checkpoint(target, path) is target
    _assert_same(source, target)


def test_wrong_model_names_file_and_keys(tmp_path):
    path = tmp_path / "promptir.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in build_model("promptir_tiny").state_dict().items()}}, path)
    with pytest.raises(CheckpointError) as info:
        load_official_checkpoint(build_model("adair_tiny"), path)
    text = str(info.value)
    assert str(path) in text and "AdaIR" in text and "adair_tiny" in text
    assert "missing keys (84, under fre1, fre2, fre3)" in text and "fre1.channel_cross_agg.kv.weight" in text
    assert "unexpected keys" in text and "prompt1, prompt2, prompt3" in text and "noise_level1.attn.qkv.weight" in text


def test_shape_mismatch_is_reported_even_when_not_strict(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(build_model("adair_tiny").state_dict(), path)
    for strict in (True, False):
        pattern = r"shape mismatches \(\d+\): decoder_level1.0.attn.project_out.weight file \(32, 32, 1, 1\) vs model \(48"
        with pytest.raises(CheckpointError, match=pattern):
            load_official_checkpoint(build_model("adair_tiny", dim=24), path, strict=strict)


def test_checkpoint_without_unused_layers_needs_them_for_strict_load(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(build_model("adair_tiny", unused_layers=True).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"unexpected keys \(9, under fre1, fre2, fre3\): fre1.conv.weight"):
        load_official_checkpoint(build_model("adair_tiny"), path)
    load_official_checkpoint(build_model("adair_tiny"), path, strict=False)  # partial load on purpose


class _Opaque:
    """A pickled object that ``weights_only=True`` must refuse."""


def test_unsafe_or_missing_files_fail_clearly(tmp_path):
    path = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": build_model("adair_tiny").state_dict(), "extra": _Opaque()}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        read_state_dict(path)
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "nope.pth")
    torch.save({"epoch": 3, "meta": {"a": 1}}, tmp_path / "empty.ckpt")
    with pytest.raises(CheckpointError, match="no tensor state dict found"):
        read_state_dict(tmp_path / "empty.ckpt")


# ---------------------------------------------------------------------------------------------------------------
# AdaIR frequency mask: official radius (h // 128) and the relative option
# ---------------------------------------------------------------------------------------------------------------
def _fre(mode: str, scale: float = 3.3) -> FreModule:
    """A FreModule whose radius fraction is t = sigmoid(4 * scale * GELU(mean feature)): 0.99 for mean 0.5."""
    torch.manual_seed(0)
    fre = FreModule(32, num_heads=4, mask_radius_mode=mode)
    with torch.no_grad():
        fre.rate_conv[0].weight.fill_(1 / 32)
        fre.rate_conv[2].weight.fill_(scale)
    return fre


def _reference_official_mask(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The release's construction: a centred box in the fftshift-ed spectrum, then shifted back: (B, 1, H, W)."""
    mask = torch.zeros(t.shape[0], 1, h, w)
    for i in range(t.shape[0]):
        rh, rw = int(h // 128 * t[i, 0]), int(w // 128 * t[i, 1])
        mask[i, :, h // 2 - rh:h // 2 + rh, w // 2 - rw:w // 2 + rw] = 1
    return torch.roll(mask, shifts=(-(h // 2), -(w // 2)), dims=(2, 3))


@pytest.mark.parametrize("hw", [(64, 64), (255, 300), (256, 256), (384, 517)])
def test_official_mask_is_the_shifted_box_and_empty_below_256(hw):
    fre = _fre("official")
    feat = torch.rand(2, 32, *hw)
    feat[1] *= -1  # a second image with t = 0.12
    with torch.no_grad():
        t = fre.rate_conv(feat.mean((-2, -1), keepdim=True)).sigmoid()[:, :, 0, 0]
        mask = fre.low_pass_mask(feat)
    assert t[0].min() > 0.98 and t[1].max() < 0.2
    assert torch.equal(mask, _reference_official_mask(t, *hw))
    assert bool(mask.any()) == (min(hw) >= 256)  # (H // 128) * t < 1 below 256 px
    assert not mask[1].any()


def test_relative_mask_exists_at_small_sizes_and_trains_rate_conv():
    official, relative = _fre("official"), _fre("relative", scale=-0.033)
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 32, 16, 16)
    with torch.no_grad():
        mask = relative.low_pass_mask(torch.rand(2, 32, 16, 16))
    assert 0 < mask.min() and mask.max() < 1 and mask[0, 0, 0, 0] > 0.5 > mask[0, 0, 8, 8]  # DC low, Nyquist high
    official.para1.data.fill_(1.0)
    official(x, y).sum().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in official.rate_conv.parameters())  # hard mask
    with torch.no_grad():
        relative.para1.fill_(1.0)  # open the frequency path (it starts closed)
    relative(x, y).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in relative.rate_conv.parameters())
    assert official.state_dict().keys() == relative.state_dict().keys()  # same checkpoint layout


def test_adair_relative_mode_changes_outputs_only_through_the_mask():
    torch.manual_seed(0)
    cfg = AdaIRConfig(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, unused_layers=False)
    official = AdaIR(cfg)
    relative = AdaIR(AdaIRConfig(**{**cfg.__dict__, "mask_radius_mode": "relative"}))
    relative.load_state_dict(official.state_dict())
    with torch.no_grad():
        for m in (official, relative):
            for fre in (m.fre1, m.fre2, m.fre3):
                fre.para1.fill_(1.0)
        x = torch.rand(1, 3, 64, 64)
        assert not torch.allclose(official(x), relative(x))


# ---------------------------------------------------------------------------------------------------------------
# Blocks vs reference formulas, padding
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["WithBias", "BiasFree"])
def test_layernorm_matches_per_pixel_formula(kind):
    torch.manual_seed(0)
    norm = LayerNorm(24, kind)
    with torch.no_grad():
        norm.body.weight.uniform_(0.5, 1.5)
        if kind == "WithBias":
            norm.body.bias.uniform_(-1, 1)
    x = torch.randn(2, 24, 7, 9) * 3 + 1
    t = rearrange(x, "b c h w -> b (h w) c")
    var = t.var(-1, keepdim=True, unbiased=False)
    if kind == "WithBias":
        ref = (t - t.mean(-1, keepdim=True)) / torch.sqrt(var + 1e-5) * norm.body.weight + norm.body.bias
    else:
        ref = t / torch.sqrt(var + 1e-5) * norm.body.weight
    torch.testing.assert_close(norm(x), rearrange(ref, "b (h w) c -> b c h w", h=7), rtol=1e-5, atol=1e-5)


def test_mdta_matches_explicit_per_head_loop():
    torch.manual_seed(0)
    attn = Attention(16, num_heads=4)
    with torch.no_grad():
        attn.temperature.uniform_(0.5, 2.0)
    x = torch.randn(2, 16, 5, 6)
    q, k, v = attn.qkv_dwconv(attn.qkv(x)).chunk(3, dim=1)
    heads = []
    for i in range(4):
        sl = slice(4 * i, 4 * i + 4)
        qi, ki, vi = (t[:, sl].flatten(2) for t in (q, k, v))  # (B, 4, HW)
        qi, ki = qi / qi.norm(dim=-1, keepdim=True), ki / ki.norm(dim=-1, keepdim=True)
        a = torch.softmax(torch.einsum("bcn,bdn->bcd", qi, ki) * attn.temperature[i], dim=-1)
        heads.append(torch.einsum("bcd,bdn->bcn", a, vi))
    ref = attn.project_out(torch.cat(heads, 1).reshape(2, 16, 5, 6))
    torch.testing.assert_close(attn(x), ref, rtol=1e-5, atol=1e-5)


def test_prompt_mixing_matches_repeat_and_sum():
    torch.manual_seed(0)
    gen = PromptGenBlock(prompt_dim=8, prompt_len=5, prompt_size=6, lin_dim=12)
    x = torch.randn(3, 12, 10, 7)
    weights = F.softmax(gen.linear_layer(x.mean(dim=(-2, -1))), dim=1)  # (B, N)
    mixed = (weights[:, :, None, None, None] * gen.prompt_param.repeat(3, 1, 1, 1, 1)).sum(1)  # (B, P, 6, 6)
    ref = gen.conv3x3(F.interpolate(mixed, (10, 7), mode="bilinear"))
    torch.testing.assert_close(gen(x), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["promptir_tiny", "adair_tiny"])
def test_any_size_is_padded_inside_forward_and_cropped(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.rand(1, 3, 19, 30)
    padded = F.pad(x, (0, 2, 0, 5), mode="reflect")  # to 24 x 32, what forward does internally
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(padded)[..., :19, :30], rtol=1e-5, atol=1e-5)
