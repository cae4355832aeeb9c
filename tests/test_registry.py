"""Every registered model, through the registry: tiny presets run forward/backward on odd sizes, configs round-trip
through YAML, and bad names, keys and values fail with errors that list what is valid."""
from __future__ import annotations

import pytest
import torch
import yaml

from m2restore.config import ConfigError, apply_overrides, from_dict, load_yaml, save_yaml, to_dict
from m2restore.models.base import RestorationOutput, count_parameters
from m2restore.registry import build_from_config, build_model, get_config, get_preset, list_models

TINY = [n for n in list_models() if n.endswith("_tiny")]


def _image(output: torch.Tensor | RestorationOutput) -> torch.Tensor:
    return output.image if isinstance(output, RestorationOutput) else output


def test_every_full_preset_has_a_tiny_sibling():
    names = set(list_models())
    assert {"promptir", "adair", "promptir_tiny", "adair_tiny"} <= names
    for name in names - set(TINY):
        assert f"{name}_tiny" in names, f"preset '{name}' has no '{name}_tiny' for CPU tests"
        assert get_preset(f"{name}_tiny").family == get_preset(name).family


@pytest.mark.parametrize("name", TINY)
def test_tiny_forward_keeps_odd_size_and_is_finite(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        y = model(x)
        aux = model(x, return_aux=True)
    assert isinstance(y, torch.Tensor) and y.shape == x.shape
    assert torch.isfinite(y).all()
    assert isinstance(aux, RestorationOutput)
    assert aux.image.shape == x.shape and torch.allclose(aux.image, y, atol=1e-6)


@pytest.mark.parametrize("name", TINY)
def test_tiny_backward_reaches_every_trainable_parameter(name):
    torch.manual_seed(0)
    model = build_model(name).train()
    x = torch.rand(2, 3, 29, 35)
    out = model(x, return_aux=True)
    loss = (out.image - x).abs().mean() + sum(out.aux_losses.values(), torch.zeros(()))
    loss.backward()
    trainable = {k: p for k, p in model.named_parameters() if p.requires_grad}
    assert trainable, "no trainable parameters"
    missing = [k for k, p in trainable.items() if p.grad is None]
    assert not missing, f"{name}: trainable parameters without a gradient: {missing}"
    bad = [k for k, p in trainable.items() if not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: non-finite gradients in {bad}"
    assert sum(float(p.grad.abs().sum()) for p in trainable.values()) > 0


@pytest.mark.parametrize("name", list_models())
def test_config_round_trips_through_yaml(name, tmp_path):
    cfg = get_config(name)
    save_yaml(cfg, tmp_path / "model.yaml")
    back = from_dict(type(cfg), load_yaml(tmp_path / "model.yaml"))
    assert back == cfg
    assert to_dict(back) == to_dict(cfg)


@pytest.mark.parametrize("name", TINY)
def test_model_from_saved_config_matches_preset(name, tmp_path):
    cfg = get_config(name)
    save_yaml(cfg, tmp_path / "model.yaml")
    rebuilt = build_from_config(name, from_dict(type(cfg), load_yaml(tmp_path / "model.yaml")))
    original = build_model(name)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in original.state_dict().items()}
    assert rebuilt.preset_name == name


def test_model_from_inline_yaml_with_overrides():
    text = """
    dim: 8
    num_blocks: [1, 1, 1, 1]
    num_refinement_blocks: 0
    mask_radius_mode: relative
    """
    base = get_config("adair_tiny")
    cfg = from_dict(type(base), {**to_dict(base), **yaml.safe_load(text)})
    assert cfg.num_blocks == (1, 1, 1, 1) and cfg.mask_radius_mode == "relative"
    model = build_from_config("adair_tiny", cfg)
    assert model(torch.rand(1, 3, 16, 24)).shape == (1, 3, 16, 24)
    assert count_parameters(model) < count_parameters(build_model("adair_tiny"))


def test_unknown_model_name_lists_registered_models():
    with pytest.raises(ConfigError, match="unknown model 'promptirr'") as info:
        build_model("promptirr")
    assert "promptir_tiny" in str(info.value) and "adair" in str(info.value)


@pytest.mark.parametrize("name", ["promptir_tiny", "adair_tiny"])
def test_unknown_override_key_lists_valid_keys(name):
    with pytest.raises(ConfigError, match="unknown key") as info:
        build_model(name, dimm=16)
    assert "dimm" in str(info.value) and "num_blocks" in str(info.value)


@pytest.mark.parametrize(
    "override, message",
    [
        ("dim=abc", "expected an integer"),
        ("dim=1.5", "expected an integer"),
        ("bias=yes please", "expected true/false"),
        ("num_blocks=[1, 1, 1]", "expected 4 items"),
        ("heads=[1, 2, x, 8]", "expected an integer"),
        ("prompt_dims=[8, 16]", "expected 3 items"),
        ("layernorm_type=Batch", "not one of"),
        ("model.dim=8", "unknown key 'model'"),
    ],
)
def test_dotted_overrides_are_type_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(get_config("promptir_tiny"), [override])


def test_dotted_overrides_apply_with_types():
    cfg = apply_overrides(get_config("adair_tiny"), ["dim=8", "num_blocks=[1, 1, 1, 2]", "ffn_expansion_factor=2",
                                                      "mask_radius_mode=relative", "bias=true"])
    assert cfg.dim == 8 and cfg.num_blocks == (1, 1, 1, 2) and cfg.bias is True
    assert isinstance(cfg.ffn_expansion_factor, float) and cfg.mask_radius_mode == "relative"
    with pytest.raises(ConfigError, match="not one of"):
        apply_overrides(cfg, ["mask_radius_mode=radial"])


@pytest.mark.parametrize("name, overrides, message", [
    ("adair_tiny", {"heads": (1, 2, 3, 8)}, "not divisible by heads"),
    ("promptir_tiny", {"prompt_dims": (16, 32, 81)}, "noise_level3 width"),
])
def test_inconsistent_widths_fail_at_config_time(name, overrides, message):
    with pytest.raises(ConfigError, match=message):
        get_config(name, **overrides)
