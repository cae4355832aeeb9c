"""Arrange and check real CDD-11 and AllWeather downloads.

The datasets are not downloadable by script (they sit behind OneDrive and Google Drive pages), so the user downloads
and extracts them; :func:`arrange_cdd11` / :func:`arrange_allweather` find the folders inside an extracted download
and link (or copy or move) them into the layout our loaders read, and :func:`check_cdd11` /
:func:`check_allweather` report, split by split, what is present, what is missing and what is broken.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from .datasets import ALLWEATHER_SUBSETS, DatasetError, allweather_pairs, cdd11_pairs, check_pair_files
from .degrade import CDD11_TYPES
from .io import ImageReadError, list_images, read_image

__all__ = [
    "ALLWEATHER_DOWNLOADS",
    "CDD11_DOWNLOADS",
    "CheckReport",
    "arrange_allweather",
    "arrange_cdd11",
    "check_allweather",
    "check_cdd11",
]

CDD11_DOWNLOADS = """CDD-11 (OneRestore, ECCV 2024): https://github.com/gy65896/OneRestore (section "Prepare Dataset")
  OneDrive folder: https://1drv.ms/f/s!As3rCDROnrbLgqpezG4sao-u9ddDhw?e=A0REHx
  Extract it anywhere; the archive holds CDD-11_train/ and CDD-11_test/ (or train/ and test/), each with clear/ and
  the 11 degradation folders. 13,013 train pairs and 2,200 test pairs (200 per type)."""

ALLWEATHER_DOWNLOADS = """AllWeather (TransWeather, CVPR 2022): https://github.com/jeya-maria-jose/TransWeather (section "Datasets")
  Training set (18,069 pairs, allweather/{input,gt}):
    https://drive.google.com/file/d/1tfeBnjZX1wIhIFPl6HOzzOKOyo0GdGHl/view?usp=sharing
  File lists (allweather.txt and the test lists):
    https://drive.google.com/file/d/1UsazX-P3sPcDGw3kxkyFWqUyNfhYN_AM/view?usp=sharing
  Test sets, from their authors:
    Snow100K-S (16,611) and Snow100K-L (16,801): https://sites.google.com/view/yunfuliu/desnownet
    Outdoor-Rain Test1 (750): https://github.com/liruoteng/HeavyRainRemoval
    RainDrop test_a (58): https://github.com/rui1996/DeRaindrop"""

CDD11_EXPECTED = {"train": 13013, "test": 2200}
ALLWEATHER_EXPECTED = {"train": 18069, **{k: v[3] for k, v in ALLWEATHER_SUBSETS.items()}}


@dataclass
class CheckReport:
    """What a check found: one row per folder or split, and the problems."""

    dataset: str
    root: Path
    rows: list[dict] = field(default_factory=list)  # {"split", "folder", "found", "expected", "status"}
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every expected count is met and nothing is broken."""
        return not self.problems and all(r["status"] == "ok" for r in self.rows)

    def table(self) -> str:
        """The rows as an aligned text table, then the problems."""
        head = ("split", "folder", "found", "expected", "status")
        cells = [head] + [tuple(str(r[k]) for k in head) for r in self.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
        lines = [f"{self.dataset} at {self.root}"]
        lines += ["  ".join(c[i].ljust(widths[i]) for i in range(len(head))) for c in cells]
        lines += [f"problem: {p}" for p in self.problems]
        lines.append("complete" if self.ok else "INCOMPLETE: see the rows and problems above")
        return "\n".join(lines)


def _status(found: int, expected: int | None) -> str:
    if found == 0:
        return "missing"
    if expected is None or found == expected:
        return "ok"
    return "partial" if found < expected else "extra"


def _decode_all(pairs, report: CheckReport) -> None:
    for path in dict.fromkeys(p for pair in pairs for p in (pair.input, pair.target)):
        try:
            read_image(path)
        except ImageReadError as err:
            report.problems.append(str(err))


def _verify(pairs_fn, report: CheckReport, decode: bool, what: str) -> list:
    """Run a layout's pairing and header checks, turning its DatasetError into report problems."""
    try:
        pairs = pairs_fn()
        check_pair_files(pairs, what)
    except DatasetError as err:
        report.problems.append(str(err))
        return []
    if decode:
        _decode_all(pairs, report)
    return pairs


def check_cdd11(root: str | os.PathLike, decode: bool = False) -> CheckReport:
    """Count, pair and read a CDD-11 tree (see :func:`m2restore.data.datasets.cdd11_pairs` for the layout).

    Args:
        root: the folder holding ``train/`` and ``test/``.
        decode: decode every image (slow) instead of reading headers only.
    """
    report = CheckReport("CDD-11", Path(root))
    for split, expected in CDD11_EXPECTED.items():
        base = Path(root) / split
        per_type = expected // len(CDD11_TYPES)
        for folder in ("clear", *CDD11_TYPES):
            found = len(list_images(base / folder)) if (base / folder).is_dir() else 0
            report.rows.append({"split": split, "folder": folder, "found": found, "expected": per_type,
                                "status": _status(found, per_type)})
        if base.is_dir():
            present = [t for t in CDD11_TYPES if (base / t).is_dir()]
            pairs = _verify(partial(cdd11_pairs, root, split, present), report, decode, f"CDD-11 {split}")
            report.rows.append({"split": split, "folder": "(pairs)", "found": len(pairs), "expected": expected,
                                "status": _status(len(pairs), expected)})
    return report


def check_allweather(root: str | os.PathLike, decode: bool = False) -> CheckReport:
    """Count, pair and read an AllWeather tree (training set and the four test subsets)."""
    report = CheckReport("AllWeather", Path(root))
    for split, expected in ALLWEATHER_EXPECTED.items():
        pairs = _verify(partial(allweather_pairs, root, split), report, decode, f"AllWeather {split}")
        report.rows.append({"split": split, "folder": "(pairs)", "found": len(pairs), "expected": expected,
                            "status": _status(len(pairs), expected)})
    return report


def _place(src: Path, dst: Path, mode: str) -> None:
    """Link, copy or move ``src`` to ``dst`` (replacing an existing link)."""
    if dst.is_symlink():
        dst.unlink()
    if dst.exists():
        raise FileExistsError(f"{dst} already exists. Fix: remove it or choose another --out.")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if mode == "link":
        dst.symlink_to(src.resolve(), target_is_directory=src.is_dir())
    elif mode == "copy":
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    elif mode == "move":
        shutil.move(str(src), str(dst))
    else:
        raise ValueError(f"mode must be 'link', 'copy' or 'move', got {mode!r}")


def _find(src: Path, names: tuple[str, ...], must_have: tuple[str, ...] = (), max_depth: int = 4) -> Path | None:
    """The shallowest folder under ``src`` named one of ``names`` (case-insensitive) with the given children."""
    wanted = {n.lower() for n in names}
    for depth in range(max_depth + 1):
        for path in sorted(src.glob("/".join(["*"] * depth))) if depth else [src]:
            if path.is_dir() and path.name.lower() in wanted and all((path / c).exists() for c in must_have):
                return path
    return None


def arrange_cdd11(src: str | os.PathLike, out: str | os.PathLike, mode: str = "link") -> Path:
    """Place an extracted CDD-11 download as ``out/{train,test}``.

    Args:
        src: the extracted download (searched a few levels deep for ``CDD-11_train`` / ``train`` with ``clear/``).
        out: the dataset root to create.
        mode: ``'link'`` (symlinks, default), ``'copy'`` or ``'move'``.
    """
    src, out = Path(src), Path(out)
    for split in ("train", "test"):
        found = _find(src, (f"CDD-11_{split}", split), must_have=("clear",))
        if found is None:
            raise DatasetError(f"{src}: no CDD-11 {split} folder (CDD-11_{split}/ or {split}/ with clear/ inside). "
                               f"Fix: extract the download into {src}.\n{CDD11_DOWNLOADS}")
        _place(found, out / split, mode)
    return out


def arrange_allweather(src: str | os.PathLike, out: str | os.PathLike, mode: str = "link") -> Path:
    """Place an extracted AllWeather download as ``out/train/{allweather,allweather.txt}`` and ``out/test/<subset>``.

    Subsets not found are reported by :func:`check_allweather`, not here: the test sets come from four sources.
    """
    src, out = Path(src), Path(out)
    train = _find(src, ("allweather",), must_have=("input", "gt"))
    if train is None:
        raise DatasetError(f"{src}: no allweather/ folder with input/ and gt/. Fix: extract the training set into "
                           f"{src}.\n{ALLWEATHER_DOWNLOADS}")
    _place(train, out / "train" / "allweather", mode)
    listing = next(iter(sorted(src.rglob("allweather.txt"))), None)
    if listing is not None:
        _place(listing, out / "train" / "allweather.txt", "copy" if mode == "link" else mode)
    for folder, aliases, _, _ in ALLWEATHER_SUBSETS.values():
        found = _find(src, aliases)
        if found is not None:
            _place(found, out / "test" / folder, mode)
    return out
