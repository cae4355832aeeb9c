"""Layered configuration: dataclass defaults -> YAML file -> dotted overrides, all type-checked.

Every model family has one config dataclass; experiments nest them (``model``, ``train``, ``data``). The helpers
here turn dataclasses into plain dicts and back, read and write YAML, and apply ``--set a.b=value`` overrides with
a type check against the dataclass field, so that a typo or a wrong type fails at once instead of deep in a run.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration key or value that does not fit the dataclass it targets."""


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain (YAML-safe) dict of a dataclass, recursively; tuples become lists."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def _check_value(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` coerced to the annotated type ``tp`` or raise ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} does not match {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_check_value(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [_check_value(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads '5e-4' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"{cls.__name__}: unknown key(s) {unknown} at '{where or '<root>'}'. Valid keys: {', '.join(names)}"
        )
    kwargs = {k: _check_value(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def replace(cfg: T, **overrides: Any) -> T:
    """Copy of dataclass ``cfg`` with type-checked ``overrides`` (unknown keys list the valid ones)."""
    merged = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init}
    unknown = sorted(set(overrides) - set(merged))
    if unknown:
        raise ConfigError(f"{type(cfg).__name__}: unknown key(s) {unknown}. Valid keys: {', '.join(merged)}")
    merged.update(overrides)
    return from_dict(type(cfg), merged)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``'model.dim=32'`` into (['model', 'dim'], 32); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r} has an empty key")
    return path, yaml.safe_load(raw) if raw.strip() else ""


def apply_overrides(cfg: T, overrides: list[str] | tuple[str, ...]) -> T:
    """Apply dotted ``key=value`` overrides to a (nested) dataclass, type-checked, returning a new object."""
    for text in overrides:
        path, value = parse_override(text)
        cfg = _set_path(cfg, path, value, text)
    return cfg


def _set_path(obj: Any, path: list[str], value: Any, text: str) -> Any:
    head, rest = path[0], path[1:]
    if not dataclasses.is_dataclass(obj):
        raise ConfigError(f"override {text!r}: cannot descend into a non-config value at '{head}'")
    names = [f.name for f in dataclasses.fields(obj)]
    if head not in names:
        raise ConfigError(f"override {text!r}: unknown key '{head}' in {type(obj).__name__}; valid: {', '.join(names)}")
    current = getattr(obj, head)
    if rest:
        if isinstance(current, dict):
            new = dict(current)
            node = new
            for p in rest[:-1]:
                node = node.setdefault(p, {})
            node[rest[-1]] = value
            return replace(obj, **{head: new})
        return replace(obj, **{head: _set_path(current, rest, value, text)})
    try:
        return replace(obj, **{head: value})
    except ConfigError as e:
        raise ConfigError(f"override {text!r}: {e}") from None


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping; a clear error names the file when it is missing or not a mapping."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    with open(p) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a YAML mapping at the top level")
    return data


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_yaml(data: Any, path: str | os.PathLike) -> None:
    """Write a dataclass or mapping as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(to_dict(data), sort_keys=False))
