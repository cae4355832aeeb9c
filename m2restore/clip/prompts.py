"""Prompt bank: degradation classes, their captions, and template-ensembled text embeddings.

The bank is data (``prompts.yaml`` beside this file): classes with phrases and aliases, caption templates,
and named class sets (``default`` K=13, ``cdd11`` K=11, ``allweather`` K=3, ``release6`` K=6). A class's
text embedding is CLIP's template ensemble: the normalised mean of its normalised caption embeddings.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

BANK_PATH = Path(__file__).with_name("prompts.yaml")
DEFAULT_SET = "default"


@dataclass(frozen=True)
class ClassPrompts:
    """One degradation class and the captions whose embeddings are averaged into its text embedding.

    Args:
        name: class name (a CDD-11 folder name for the default bank, e.g. ``low_haze``).
        captions: every template formatted with every phrase.
    """

    name: str
    captions: tuple[str, ...]


@lru_cache(maxsize=4)
def load_bank(path: str | None = None) -> dict[str, Any]:
    """Read and check a prompt-bank YAML file (default: the bundled ``prompts.yaml``)."""
    import yaml

    file = Path(path) if path else BANK_PATH
    with open(file, encoding="utf-8") as f:
        bank = yaml.safe_load(f)
    for key in ("templates", "classes", "sets"):
        if key not in bank:
            raise ValueError(f"prompt bank {file} has no '{key}' section")
    for name, entry in bank["classes"].items():
        if not entry.get("phrases"):
            raise ValueError(f"prompt bank {file}: class '{name}' needs a non-empty 'phrases' list")
    for set_name, members in bank["sets"].items():
        names = members["classes"] if isinstance(members, dict) else members
        missing = [n for n in names if not isinstance(members, dict) and n not in bank["classes"]]
        if missing:
            raise ValueError(f"prompt bank {file}: set '{set_name}' names unknown classes {missing}")
    return bank


def _alias_table(bank: dict[str, Any]) -> dict[str, str]:
    table = {}
    for name, entry in bank["classes"].items():
        table[name.lower()] = name
        for alias in entry.get("aliases", []):
            table.setdefault(alias.lower(), name)
    return table


def canonical_name(name: str, bank_path: str | None = None) -> str:
    """Map a dataset's folder name or an alias (``rain_haze``, ``low_light``) to the bank's class name."""
    bank = load_bank(bank_path)
    table = _alias_table(bank)
    key = name.lower().replace("-", "_").replace(" ", "_")
    if key not in table:
        raise KeyError(f"'{name}' is not a class or alias in the prompt bank {bank_path or BANK_PATH}; "
                       f"known classes: {sorted(bank['classes'])}")
    return table[key]


def _captions(phrases: Sequence[str], templates: Sequence[str]) -> tuple[str, ...]:
    return tuple(t.format(p) for p in phrases for t in templates)


def resolve_classes(
    classes: str | Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    bank_path: str | None = None,
) -> list[ClassPrompts]:
    """Turn a class selection into class prompts.

    Args:
        classes: None (the ``default`` set, K=13), a set name (``cdd11``, ``release6``, ...), a comma-separated
            string, or a list mixing class names, aliases and set names; duplicates are dropped, order kept.
        templates: caption templates overriding the bank's (``["{}"]`` gives bare phrases).
        bank_path: another prompt-bank YAML file.

    Returns:
        One ``ClassPrompts`` per class, in selection order.
    """
    bank = load_bank(bank_path)
    if classes is None:
        classes = [DEFAULT_SET]
    elif isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
    out: dict[str, ClassPrompts] = {}
    for item in classes:
        members = bank["sets"].get(item)
        if isinstance(members, dict):  # a set with a vocabulary of its own
            tmpl = templates or members.get("templates") or bank["templates"]
            for name, phrases in members["classes"].items():
                out.setdefault(name, ClassPrompts(name, _captions(phrases, tmpl)))
            continue
        for name in members if members is not None else [item]:
            name = canonical_name(name, bank_path)
            tmpl = templates or bank["templates"]
            out.setdefault(name, ClassPrompts(name, _captions(bank["classes"][name]["phrases"], tmpl)))
    if not out:
        raise ValueError("empty class selection for the degradation prior")
    return list(out.values())


def class_parts(class_prompts: Sequence[ClassPrompts], bank_path: str | None = None,
                ) -> tuple[list[ClassPrompts], torch.Tensor]:
    """The single degradations ("parts") the classes are made of, and which class has which part.

    A class's parts are its ``parts`` entry in the bank, else the pieces of its name when each piece is a bank
    class (CDD-11's convention: ``low_haze_rain`` = low + haze + rain), else the class itself.

    Returns:
        The part prompts (P of them) and a (K, P) 0/1 membership matrix.
    """
    bank = load_bank(bank_path)
    table = _alias_table(bank)
    parts: dict[str, ClassPrompts] = {}
    members = []
    for cp in class_prompts:
        entry = bank["classes"].get(cp.name, {})
        pieces = entry.get("parts") or cp.name.split("_")
        if not all(p.lower() in table for p in pieces):
            pieces = [cp.name]
        names = []
        for piece in pieces:
            name = table.get(piece.lower(), piece)
            if name not in parts:
                parts[name] = resolve_classes([name], bank_path=bank_path)[0] if name in bank["classes"] else cp
            names.append(name)
        members.append(names)
    order = list(parts)
    matrix = torch.tensor([[float(p in names) for p in order] for names in members])  # (K, P)
    return [parts[p] for p in order], matrix


def list_class_sets(bank_path: str | None = None) -> dict[str, list[str]]:
    """Named class sets of the bank and their class names."""
    return {name: [c.name for c in resolve_classes(name, bank_path=bank_path)]
            for name in load_bank(bank_path)["sets"]}


def encode_class_texts(
    model: torch.nn.Module,
    tokenizer: Any,
    class_prompts: Sequence[ClassPrompts],
) -> torch.Tensor:
    """Template-ensembled, L2-normalised text embedding per class (differentiable if grad is enabled).

    Args:
        model: an open_clip model with ``encode_text``.
        tokenizer: an open_clip tokenizer (callable on a list of strings).
        class_prompts: the classes.

    Returns:
        (K, E) unit-norm class embeddings.
    """
    captions = [c for cp in class_prompts for c in cp.captions]
    owner = torch.tensor([k for k, cp in enumerate(class_prompts) for _ in cp.captions])  # (N,)
    device = next(model.parameters()).device
    tokens = tokenizer(captions).to(device)  # (N, context)
    embed = F.normalize(model.encode_text(tokens).float(), dim=-1)  # (N, E)
    sums = embed.new_zeros(len(class_prompts), embed.shape[1]).index_add_(0, owner.to(device), embed)  # (K, E)
    return F.normalize(sums, dim=-1)  # (K, E)
