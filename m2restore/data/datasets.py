"""Paired datasets: CDD-11, AllWeather, any input/target folders, and on-the-fly synthesis from clean images.

Every dataset validates its files when it is built (missing folders, unmatched or duplicated stems, unreadable
headers, size mismatches) and raises one :class:`DatasetError` that lists the offending files and the fix, so a
broken download fails before training starts instead of deep inside a DataLoader worker.

Items are dicts ``{"input": (3, H, W), "target": (3, H, W), "type": str, "name": str}`` of float32 tensors in
``[0, 1]``. ``patch_size=None`` returns full images (evaluation); an int returns the same random crop of both
images (training), optionally with one of the 8 flips/rotations (``augment=True``). Random choices use torch's
generator, so ``torch.manual_seed`` and DataLoader worker seeding make them reproducible.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from .degrade import CDD11_TYPES, SynthesisConfig, degrade
from .io import ImageReadError, image_size, list_images, read_image

__all__ = [
    "ALLWEATHER_SUBSETS",
    "CDD11",
    "AllWeather",
    "DatasetError",
    "Pair",
    "PairedDataset",
    "PairedFolder",
    "Synthetic",
    "allweather_pairs",
    "allweather_type",
    "build_dataset",
    "cdd11_pairs",
    "check_pair_files",
    "list_datasets",
    "type_balanced_sampler",
    "type_balanced_weights",
]

# AllWeather test subsets: canonical folder, accepted folder names, degradation type, official size (TransWeather).
ALLWEATHER_SUBSETS = {
    "snow100k-s": ("Snow100K-S", ("Snow100K-S", "snow100k-s", "Snow100K_S", "snowtest100k_S"), "snow", 16611),
    "snow100k-l": ("Snow100K-L", ("Snow100K-L", "snow100k-l", "Snow100K_L", "snowtest100k_L"), "snow", 16801),
    "outdoor-rain": ("Outdoor-Rain", ("Outdoor-Rain", "outdoor-rain", "test1", "Test1"), "rain_haze", 750),
    "raindrop": ("RainDrop", ("RainDrop", "raindrop", "test_a", "raindrop_a", "RainDrop-A"), "raindrop", 58),
}
_INPUT_DIRS = ("input", "synthetic", "data", "rain", "lq")
_TARGET_DIRS = ("gt", "target", "clean", "clear", "hq")
_MAX_LISTED = 20


class DatasetError(ValueError):
    """A dataset folder is missing, incomplete or inconsistent; the message lists the files and the fix."""


@dataclass(frozen=True)
class Pair:
    """One degraded/clean pair on disk."""

    input: Path
    target: Path
    type: str
    name: str


def _fail(what: str, problems: Sequence[str], fix: str) -> None:
    """Raise one DatasetError listing up to _MAX_LISTED problems."""
    if not problems:
        return
    listed = "\n".join(f"  - {p}" for p in problems[:_MAX_LISTED])
    more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    raise DatasetError(f"{what}: {len(problems)} problem(s)\n{listed}{more}\nFix: {fix}")


def _stems(folder: Path, recursive: bool = False) -> tuple[dict[str, Path], list[str]]:
    """Map stem (relative path without suffix) -> file; also report stems present with several extensions."""
    found: dict[str, list[Path]] = {}
    for p in list_images(folder, recursive=recursive):
        found.setdefault(p.relative_to(folder).with_suffix("").as_posix(), []).append(p)
    dups = [f"duplicated stem: {', '.join(str(p) for p in ps)}" for ps in found.values() if len(ps) > 1]
    return {s: ps[0] for s, ps in found.items()}, dups


def _find_dir(parent: Path, names: Sequence[str]) -> Path | None:
    return next((parent / n for n in names if (parent / n).is_dir()), None)


# ----------------------------------------------------------------------------------------------------------------
# Base dataset
# ----------------------------------------------------------------------------------------------------------------
def check_pair_files(pairs: Sequence[Pair], what: str) -> None:
    """Read every header once: unreadable files and input/target size mismatches."""
    sizes: dict[Path, tuple[int, int]] = {}
    problems = []
    for path in dict.fromkeys(p for pair in pairs for p in (pair.input, pair.target)):
        try:
            sizes[path] = image_size(path)
        except ImageReadError as err:
            problems.append(f"unreadable: {err}")
    for pair in pairs:
        a, b = sizes.get(pair.input), sizes.get(pair.target)
        if a and b and a != b:
            problems.append(f"size mismatch: {pair.input} is {a[1]}x{a[0]} but {pair.target} is {b[1]}x{b[0]}")
    _fail(what, problems, "re-download or re-extract the listed files (or delete each with its partner); "
          "pairs must have identical sizes.")


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # (3, H, W)


def _random_crop(arrays: Sequence[np.ndarray], patch: int) -> list[np.ndarray]:
    """The same random patch x patch crop of every array (symmetric padding first if one is too small)."""
    h, w = arrays[0].shape[:2]
    if h < patch or w < patch:
        pad = ((0, max(0, patch - h)), (0, max(0, patch - w)), (0, 0))
        arrays = [np.pad(a, pad, mode="symmetric") for a in arrays]
        h, w = arrays[0].shape[:2]
    y = int(torch.randint(0, h - patch + 1, ()))
    x = int(torch.randint(0, w - patch + 1, ()))
    return [a[y:y + patch, x:x + patch] for a in arrays]


def _random_dihedral(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """One of the 8 flips/rotations, the same for every array."""
    k = int(torch.randint(0, 8, ()))
    arrays = [np.rot90(a, k % 4) for a in arrays]
    return [a[:, ::-1] for a in arrays] if k >= 4 else list(arrays)


class PairedDataset(Dataset):
    """Validated input/target pairs with paired crops and flips.

    Args:
        pairs: the pairs; checked at construction.
        patch_size: random crop size, or None for full images.
        augment: random flips and 90-degree rotations.
        check: ``'header'`` reads every file header (readability and sizes), ``'none'`` skips that.
        what: how the dataset is named in error messages.
    """

    def __init__(
        self, pairs: Sequence[Pair], patch_size: int | None = None, augment: bool = False, check: str = "header",
        what: str = "dataset",
    ) -> None:
        if check not in ("header", "none"):
            raise ValueError(f"check must be 'header' or 'none', got {check!r}")
        if not pairs:
            raise DatasetError(f"{what}: no image pairs found. Fix: check the root folder and the split name.")
        if check == "header":
            check_pair_files(pairs, what)
        self.pairs = list(pairs)
        self.patch_size = patch_size
        self.augment = augment

    @property
    def types(self) -> list[str]:
        """The degradation type of every item, in order (for type-balanced sampling)."""
        return [p.type for p in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        pair = self.pairs[index]
        inp, tgt = read_image(pair.input), read_image(pair.target)
        if inp.shape != tgt.shape:
            raise DatasetError(f"size mismatch: {pair.input} {inp.shape} vs {pair.target} {tgt.shape}. "
                               "Fix: re-extract or delete this pair.")
        return inp, tgt

    def __getitem__(self, index: int) -> dict:
        inp, tgt = self._load(index)
        if self.patch_size is not None:
            inp, tgt = _random_crop([inp, tgt], self.patch_size)
        if self.augment:
            inp, tgt = _random_dihedral([inp, tgt])
        pair = self.pairs[index]
        return {"input": _to_tensor(inp), "target": _to_tensor(tgt), "type": pair.type, "name": pair.name}


# ----------------------------------------------------------------------------------------------------------------
# CDD-11
# ----------------------------------------------------------------------------------------------------------------
def _split_dir(root: Path, split: str, aliases: Sequence[str]) -> Path:
    for name in (split, *aliases):
        if (root / name).is_dir():
            return root / name
    if root.name in (split, *aliases) and root.is_dir():
        return root
    raise DatasetError(
        f"{root}: no '{split}' folder (looked for {', '.join(repr(a) for a in (split, *aliases))}). "
        "Fix: point root at the folder that holds the splits, or arrange a download with data_scripts/prepare_*.py."
    )


def cdd11_pairs(root: str | os.PathLike, split: str = "train", types: Sequence[str] | None = None) -> list[Pair]:
    """Pairs of the official CDD-11 layout ``{train,test}/{clear,<type>}/NNNNNN.png`` (also ``CDD-11_<split>``)."""
    types = list(CDD11_TYPES if types is None else types)
    bad = [t for t in types if t not in CDD11_TYPES]
    if bad:
        raise ValueError(f"unknown CDD-11 type(s) {bad}; choose from {CDD11_TYPES}")
    base = _split_dir(Path(root), split, (f"CDD-11_{split}",))
    what = f"CDD-11 at {base}"
    missing = [t for t in ("clear", *types) if not (base / t).is_dir()]
    _fail(what, [f"missing folder: {base / t}" for t in missing],
          "download CDD-11 completely, or pass types=[...] with the degradations you have.")
    clear, problems = _stems(base / "clear")
    pairs = []
    for t in types:
        degraded, dups = _stems(base / t)
        problems += dups
        problems += [f"unmatched: {base / t / s}.* has no clear/{s}.*" for s in sorted(set(degraded) - set(clear))]
        pairs += [Pair(degraded[s], clear[s], t, f"{t}/{s}") for s in sorted(set(degraded) & set(clear))]
    _fail(what, problems, "every degraded image needs exactly one clear image of the same file name; remove "
          "duplicates and re-extract the missing files.")
    return pairs


class CDD11(PairedDataset):
    """CDD-11 (OneRestore) or a mini CDD-11 in the same layout.

    Args:
        root: folder holding ``train/`` and ``test/`` (or ``CDD-11_train/``...), or the split folder itself.
        split: ``'train'`` or ``'test'``.
        types: degradation types to use; default all 11.
        patch_size, augment, check: see :class:`PairedDataset`.
    """

    def __init__(
        self, root: str | os.PathLike, split: str = "train", types: Sequence[str] | None = None,
        patch_size: int | None = None, augment: bool = False, check: str = "header",
    ) -> None:
        super().__init__(cdd11_pairs(root, split, types), patch_size, augment, check, f"CDD-11 {split} at {root}")


# ----------------------------------------------------------------------------------------------------------------
# AllWeather
# ----------------------------------------------------------------------------------------------------------------
_OUTDOOR_RAIN_NAME = re.compile(r"^(im_\d+)_s\d+_a\d+$")


def allweather_type(stem: str) -> str:
    """Degradation type of an AllWeather training file from its name (the sources' naming conventions)."""
    if _OUTDOOR_RAIN_NAME.match(stem):
        return "rain_haze"
    if re.fullmatch(r"\d+_rain", stem):
        return "raindrop"
    return "snow"


def _target_stem_candidates(stem: str) -> list[str]:
    """Target stems to try: identical, RainDrop ``N_rain`` -> ``N_clean``, Outdoor-Rain ``im_N_sX_aY`` -> ``im_N``."""
    out = [stem]
    if stem.endswith("_rain"):
        out.append(stem[: -len("_rain")] + "_clean")
    match = _OUTDOOR_RAIN_NAME.match(stem)
    if match:
        out.append(match.group(1))
    return out


def _pair_folders(inp_dir: Path, tgt_dir: Path, type_of, what: str) -> list[Pair]:
    inputs, problems = _stems(inp_dir)
    targets, dups = _stems(tgt_dir)
    problems += dups
    pairs = []
    for stem in sorted(inputs):
        match = next((t for t in _target_stem_candidates(stem) if t in targets), None)
        if match is None:
            problems.append(f"unmatched: {inputs[stem]} has no target in {tgt_dir}")
        else:
            pairs.append(Pair(inputs[stem], targets[match], type_of(stem), stem))
    _fail(what, problems, "every input needs exactly one target (same stem, or the source's naming rule); "
          "remove duplicates and re-extract missing files.")
    return pairs


def allweather_pairs(root: str | os.PathLike, split: str = "train") -> list[Pair]:
    """Pairs of AllWeather's training set (``train/allweather.txt`` list, else ``train/allweather/{input,gt}``)
    or of one test subset (``test/<Subset>/{input,gt}``, subset names in :data:`ALLWEATHER_SUBSETS`)."""
    root = Path(root)
    if split == "train":
        base = _split_dir(root, "train", ())
        listing = base / "allweather.txt"
        if listing.is_file():
            return _allweather_list(base, listing)
        inp, tgt = _find_dir(base / "allweather", _INPUT_DIRS), _find_dir(base / "allweather", _TARGET_DIRS)
        if inp is None or tgt is None:
            raise DatasetError(f"AllWeather train at {base}: neither allweather.txt nor allweather/{{input,gt}} "
                               "found. Fix: arrange the download with data_scripts/prepare_allweather.py.")
        return _pair_folders(inp, tgt, allweather_type, f"AllWeather train at {base}")
    if split not in ALLWEATHER_SUBSETS:
        raise ValueError(f"unknown AllWeather split {split!r}; choose 'train' or one of {list(ALLWEATHER_SUBSETS)}")
    _, aliases, kind, _ = ALLWEATHER_SUBSETS[split]
    parent = root / "test" if (root / "test").is_dir() else root
    sub = _find_dir(parent, aliases)
    if sub is None:
        raise DatasetError(f"AllWeather {split}: no folder named any of {list(aliases)} in {parent}. Fix: download "
                           "the test set and arrange it with data_scripts/prepare_allweather.py.")
    inp, tgt = _find_dir(sub, _INPUT_DIRS), _find_dir(sub, _TARGET_DIRS)
    if inp is None or tgt is None:
        raise DatasetError(f"AllWeather {split} at {sub}: needs an input folder (one of {list(_INPUT_DIRS)}) and a "
                           f"target folder (one of {list(_TARGET_DIRS)}). Fix: rename the folders.")
    return _pair_folders(inp, tgt, lambda stem: kind, f"AllWeather {split} at {sub}")


def _allweather_list(base: Path, listing: Path) -> list[Pair]:
    """TransWeather's file list: one input path per line, relative to the train folder; target = 'input' -> 'gt'."""
    problems, pairs = [], []
    lines = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
    for n, line in enumerate(lines, 1):
        parts = Path(line).parts
        if "input" not in parts:
            problems.append(f"{listing}:{n}: {line!r} has no 'input' folder component")
            continue
        i = parts.index("input")
        inp, tgt = base.joinpath(*parts), base.joinpath(*parts[:i], "gt", *parts[i + 1:])
        missing = [str(p) for p in (inp, tgt) if not p.is_file()]
        if missing:
            problems.append(f"{listing}:{n}: missing {', '.join(missing)}")
        else:
            pairs.append(Pair(inp, tgt, allweather_type(inp.stem), inp.stem))
    dups = [f"duplicated in {listing}: {line}" for line, c in Counter(lines).items() if c > 1]
    _fail(f"AllWeather train at {base}", problems + dups,
          "re-extract the missing files or remove their lines from allweather.txt.")
    return pairs


class AllWeather(PairedDataset):
    """AllWeather (TransWeather's 18,069 training pairs and four test subsets) or a mini AllWeather.

    Args:
        root: folder holding ``train/`` and ``test/``.
        split: ``'train'``, ``'snow100k-s'``, ``'snow100k-l'``, ``'outdoor-rain'`` or ``'raindrop'``.
        patch_size, augment, check: see :class:`PairedDataset`.
    """

    def __init__(
        self, root: str | os.PathLike, split: str = "train", patch_size: int | None = None, augment: bool = False,
        check: str = "header",
    ) -> None:
        super().__init__(allweather_pairs(root, split), patch_size, augment, check, f"AllWeather {split} at {root}")


# ----------------------------------------------------------------------------------------------------------------
# Generic folders and synthesis
# ----------------------------------------------------------------------------------------------------------------
class PairedFolder(PairedDataset):
    """Any input/target folders matched by file stem (relative path without extension; searched recursively).

    Args:
        input_dir: degraded images.
        target_dir: clean images.
        type: degradation type reported for every item.
        patch_size, augment, check: see :class:`PairedDataset`.
    """

    def __init__(
        self, input_dir: str | os.PathLike, target_dir: str | os.PathLike, type: str = "unknown",
        patch_size: int | None = None, augment: bool = False, check: str = "header",
    ) -> None:
        input_dir, target_dir = Path(input_dir), Path(target_dir)
        what = f"paired folders {input_dir} / {target_dir}"
        _fail(what, [f"missing folder: {d}" for d in (input_dir, target_dir) if not d.is_dir()],
              "check the paths.")
        inputs, problems = _stems(input_dir, recursive=True)
        targets, dups = _stems(target_dir, recursive=True)
        problems += dups
        problems += [f"unmatched: {inputs[s]} has no target {s}.* in {target_dir}" for s in sorted(inputs.keys() - targets)]
        problems += [f"unmatched: {targets[s]} has no input {s}.* in {input_dir}" for s in sorted(targets.keys() - inputs)]
        _fail(what, problems, "give each input a target with the same file name (extensions may differ) and "
              "remove duplicates.")
        pairs = [Pair(inputs[s], targets[s], type, s) for s in sorted(inputs)]
        super().__init__(pairs, patch_size, augment, check, what)


class Synthetic(PairedDataset):
    """Clean images degraded on the fly: every clean image once per type.

    Args:
        clean_dir: clean images (searched recursively).
        types: degradation kinds (see :func:`m2restore.data.degrade.degrade`); default the 11 CDD-11 types.
        patch_size, augment, check: see :class:`PairedDataset`; the clean image is cropped before synthesis.
        seed: base seed; item ``i`` of clean image ``j`` uses seed ``seed * 1_000_003 + j`` for every type, so its
            composites share their parts.
        resample: draw a fresh synthesis seed from torch's generator at every access (training), instead of the
            fixed per-image seed (evaluation).
        config: synthesis parameters (default per kind).
    """

    def __init__(
        self, clean_dir: str | os.PathLike, types: Sequence[str] | None = None, patch_size: int | None = None,
        augment: bool = False, check: str = "header", seed: int = 0, resample: bool = False,
        config: SynthesisConfig | None = None,
    ) -> None:
        clean_dir = Path(clean_dir)
        if not clean_dir.is_dir():
            raise DatasetError(f"synthetic: clean folder {clean_dir} does not exist. Fix: check the path.")
        self.types_used = list(CDD11_TYPES if types is None else types)
        self.clean = list_images(clean_dir, recursive=True)
        pairs = [
            Pair(p, p, t, f"{t}/{p.relative_to(clean_dir).with_suffix('').as_posix()}")
            for p in self.clean for t in self.types_used
        ]
        super().__init__(pairs, patch_size, augment, check, f"synthetic from {clean_dir}")
        self.seed, self.resample, self.config = seed, resample, config

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        clean = read_image(pair.target)
        if self.patch_size is not None:
            (clean,) = _random_crop([clean], self.patch_size)
        if self.augment:
            (clean,) = _random_dihedral([clean])
        clean = np.ascontiguousarray(clean)
        if self.resample:
            seed = int(torch.randint(0, 2**31 - 1, ()))
        else:
            seed = self.seed * 1_000_003 + index // len(self.types_used)
        degraded = degrade(clean, pair.type, seed, self.config)
        return {"input": _to_tensor(degraded), "target": _to_tensor(clean), "type": pair.type, "name": pair.name}


# ----------------------------------------------------------------------------------------------------------------
# Sampling and the registry
# ----------------------------------------------------------------------------------------------------------------
def type_balanced_weights(types: Sequence[str]) -> torch.Tensor:
    """Per-item sampling weights ``1 / count(type)``: every type is drawn equally often."""
    counts = Counter(types)
    return torch.tensor([1.0 / counts[t] for t in types], dtype=torch.double)


def type_balanced_sampler(
    dataset: PairedDataset, num_samples: int | None = None, generator: torch.Generator | None = None
) -> WeightedRandomSampler:
    """A sampler that draws each degradation type equally often (with replacement); ``len(dataset)`` per epoch."""
    weights = type_balanced_weights(dataset.types)
    return WeightedRandomSampler(weights, num_samples or len(weights), replacement=True, generator=generator)


def _folder(root: str | os.PathLike, split: str, **kw) -> PairedFolder:
    base = Path(root) / split if (Path(root) / split).is_dir() else Path(root)
    inp, tgt = _find_dir(base, _INPUT_DIRS), _find_dir(base, _TARGET_DIRS)
    if inp is None or tgt is None:
        raise DatasetError(f"folder dataset at {base}: needs input/ (or {', '.join(_INPUT_DIRS[1:])}) and target/ "
                           f"(or {', '.join(_TARGET_DIRS[:1] + _TARGET_DIRS[2:])}). Fix: rename the folders.")
    return PairedFolder(inp, tgt, **kw)


def _synthetic(root: str | os.PathLike, split: str, **kw) -> Synthetic:
    base = Path(root) / split if (Path(root) / split).is_dir() else Path(root)
    return Synthetic(base, **kw)


_DATASETS = {
    "cdd11": CDD11,
    "mini-cdd11": CDD11,
    "allweather": AllWeather,
    "mini-allweather": AllWeather,
    "folder": _folder,
    "synthetic": _synthetic,
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`build_dataset`."""
    return sorted(_DATASETS)


def build_dataset(name: str, root: str | os.PathLike, split: str, **kw) -> PairedDataset:
    """Build a dataset by name.

    Args:
        name: one of :func:`list_datasets` (``mini-*`` read the mini layouts with the same loaders).
        root: dataset root (for ``folder`` and ``synthetic``: a folder with per-split subfolders, or the data itself).
        split: ``'train'``/``'test'`` (CDD-11), ``'train'`` or a test subset (AllWeather), a subfolder otherwise.
        **kw: passed to the dataset class (``patch_size``, ``augment``, ``types``...).
    """
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list_datasets()}")
    return _DATASETS[name](root, split, **kw)
