"""Layered config: YAML round trip, dotted overrides with type checks, clear errors on unknown keys."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from m2restore.config import ConfigError, apply_overrides, from_dict, load_yaml, replace, save_yaml, to_dict


@dataclass
class Inner:
    dim: int = 48  # C
    blocks: tuple[int, ...] = (4, 6, 6, 8)
    ratio: float = 2.66
    kind: str = "raster"


@dataclass
class Outer:
    model: Inner = field(default_factory=Inner)
    name: str = "x"
    resume: str | None = None
    flag: bool = False


def test_yaml_round_trip(tmp_path):
    cfg = Outer(model=Inner(dim=32, blocks=(1, 2)), resume="auto", flag=True)
    save_yaml(cfg, tmp_path / "c.yaml")
    back = from_dict(Outer, load_yaml(tmp_path / "c.yaml"))
    assert back == cfg


def test_dotted_overrides_are_typed():
    cfg = apply_overrides(Outer(), ["model.dim=32", "model.ratio=3", "model.blocks=[1,1]", "resume=null"])
    assert cfg.model.dim == 32 and isinstance(cfg.model.ratio, float) and cfg.model.blocks == (1, 1)
    assert apply_overrides(Outer(), ["model.ratio=5e-4"]).model.ratio == 5e-4
    with pytest.raises(ConfigError, match="number"):
        apply_overrides(Outer(), ["model.ratio=fast"])
    assert cfg.resume is None
    with pytest.raises(ConfigError, match="integer"):
        apply_overrides(Outer(), ["model.dim=abc"])
    with pytest.raises(ConfigError, match="true/false"):
        apply_overrides(Outer(), ["flag=3"])


def test_unknown_keys_list_valid_ones():
    with pytest.raises(ConfigError, match="valid: dim, blocks, ratio, kind"):
        apply_overrides(Outer(), ["model.dmi=3"])
    with pytest.raises(ConfigError, match="Valid keys"):
        replace(Inner(), width=3)
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(Outer, {"model": {"dim": 3, "oops": 1}})


def test_override_syntax_error():
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides(Outer(), ["model.dim"])


def test_to_dict_is_plain():
    d = to_dict(Outer())
    assert d["model"]["blocks"] == [4, 6, 6, 8]
