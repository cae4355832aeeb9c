"""Model registry: every model is built by name from a config dataclass and a named preset.

``register_preset("adair_tiny", AdaIR, AdaIRConfig, dim=16, ...)`` records a preset; ``build_model(name,
**overrides)`` builds it with type-checked overrides; ``get_config`` returns the resolved config without building.
Model modules register themselves when ``m2restore.models`` is imported (lazily, on first use).
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from .config import ConfigError, replace


@dataclass(frozen=True)
class Preset:
    """A named, registered model configuration."""

    name: str
    model_cls: Callable[[Any], nn.Module]  # called as model_cls(config)
    config_cls: type
    fields: dict[str, Any] = field(default_factory=dict)  # overrides of the dataclass defaults
    family: str = ""  # e.g. "promptir", "adair", "m2restore"
    description: str = ""

    def config(self, **overrides: Any) -> Any:
        """The preset's config with ``overrides`` applied and type-checked."""
        base = self.config_cls(**self.fields)
        return replace(base, **overrides) if overrides else base


_PRESETS: dict[str, Preset] = {}
_LOADED = False


def register_preset(
    name: str, model_cls: Callable[[Any], nn.Module], config_cls: type, *, family: str = "",
    description: str = "", **fields: Any,
) -> Preset:
    """Register ``name``; presets are immutable and names unique."""
    if name in _PRESETS:
        raise ValueError(f"model preset '{name}' is already registered")
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"{config_cls!r} is not a dataclass")
    preset = Preset(name, model_cls, config_cls, dict(fields), family or name.split("_")[0], description)
    preset.config()  # validate the fields now, not at first use
    _PRESETS[name] = preset
    return preset


def _ensure_loaded() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        importlib.import_module("m2restore.models")


def list_models(family: str | None = None) -> list[str]:
    """Names of all registered presets (optionally of one family), sorted."""
    _ensure_loaded()
    return sorted(n for n, p in _PRESETS.items() if family is None or p.family == family)


def get_preset(name: str) -> Preset:
    """The registered preset ``name``; an unknown name lists the valid ones."""
    _ensure_loaded()
    if name not in _PRESETS:
        raise ConfigError(f"unknown model '{name}'. Registered models: {', '.join(sorted(_PRESETS))}")
    return _PRESETS[name]


def get_config(name: str, **overrides: Any) -> Any:
    """Resolved config of preset ``name`` with ``overrides``."""
    return get_preset(name).config(**overrides)


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Build registered model ``name``; ``overrides`` replace config fields (type-checked)."""
    preset = get_preset(name)
    model = preset.model_cls(preset.config(**overrides))
    model.preset_name = name  # plain attribute so checkpoints and records can name the preset
    return model


def build_from_config(name: str, config: Any) -> nn.Module:
    """Build preset ``name``'s model class from an explicit config object (e.g. read back from a checkpoint)."""
    preset = get_preset(name)
    if not isinstance(config, preset.config_cls):
        raise ConfigError(f"model '{name}' expects a {preset.config_cls.__name__}, got {type(config).__name__}")
    model = preset.model_cls(config)
    model.preset_name = name
    return model
