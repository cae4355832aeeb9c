"""Mini CDD-11 and mini AllWeather, built offline in seconds in the official folder layouts.

The default clean source is the handful of natural colour photographs bundled inside scikit-image (no download).
Of its images only five qualify; the others are grayscale (camera, moon, coins, horse, text, page, brick, grass,
gravel...), microscopy or medical (cell, ihc, retina), astronomy (hubble_deep_field), synthetic (color, chessboard,
logo) or the right view of the motorcycle stereo pair, whose left view we use (it would leak one scene across the
split). The split is by source photograph: train = astronaut, coffee, motorcycle (left); test = chelsea, rocket.

``clean_dir`` replaces that source with any folder of photographs (read recursively); it is then split by file,
a quarter of the photographs (at least one) going to test. Crops are taken at random scales (the short side of the
photo resized to 1.25-3x the crop size) and allocated round-robin over the photographs of a split, so a large
folder gives one crop per photograph. ``mini_info.json`` records the parameters and the provenance of every file; a
second call with the same parameters returns at once.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from .datasets import ALLWEATHER_SUBSETS
from .degrade import CDD11_TYPES, degrade
from .io import list_images, read_image, write_image

__all__ = ["SKIMAGE_PHOTOS", "clean_photos", "make_mini_allweather", "make_mini_cdd11"]

SKIMAGE_PHOTOS = {"astronaut": "train", "coffee": "train", "motorcycle_left": "train", "chelsea": "test",
                  "rocket": "test"}
_VERSION = 1  # bump when the output of a given set of parameters changes

Loader = Callable[[], np.ndarray]


def _skimage_loader(name: str) -> Loader:
    def load() -> np.ndarray:
        from skimage import data

        arr = data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(data, name)()
        return arr.astype(np.float32) / 255.0

    return load


def clean_photos(
    clean_dir: str | os.PathLike | None = None, seed: int = 0, test_fraction: float = 0.25
) -> dict[str, list[tuple[str, Loader]]]:
    """Clean photographs per split as ``(photo id, loader)`` lists; the split is by photograph.

    Args:
        clean_dir: folder read recursively; None uses the scikit-image photographs (fixed split).
        seed: shuffles a folder's photographs before splitting.
        test_fraction: share of a folder's photographs that go to test (at least one).
    """
    if clean_dir is None:
        return {
            split: [(name, _skimage_loader(name)) for name, s in SKIMAGE_PHOTOS.items() if s == split]
            for split in ("train", "test")
        }
    clean_dir = Path(clean_dir)
    files = list_images(clean_dir, recursive=True)
    if len(files) < 2:
        raise ValueError(f"{clean_dir}: found {len(files)} image(s); a split by photograph needs at least 2. "
                         "Fix: point --clean-dir at a folder of photographs (searched recursively).")
    order = np.random.default_rng(seed).permutation(len(files))
    n_test = max(1, round(test_fraction * len(files)))
    pick = [(files[i].relative_to(clean_dir).as_posix(), lambda p=files[i]: read_image(p)) for i in order]
    return {"train": pick[n_test:], "test": pick[:n_test]}


def _resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    arr = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    out = Image.fromarray(arr).resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(out, dtype=np.float32) / 255.0


def _crops(
    photos: list[tuple[str, Loader]], n: int, size: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, dict]]:
    """``n`` random-scale crops, allocated round-robin over the photographs; each with its provenance."""
    out = []
    for k, (photo_id, load) in enumerate(photos[:n]):
        photo = load()
        h, w = photo.shape[:2]
        for _ in range(n // len(photos) + (k < n % len(photos))):
            lo, hi = max(size, min(min(h, w), 1.25 * size)), max(size, min(min(h, w), 3 * size))
            scale = rng.uniform(lo, hi) / min(h, w)
            rh, rw = max(size, round(h * scale)), max(size, round(w * scale))
            y, x = int(rng.integers(0, rh - size + 1)), int(rng.integers(0, rw - size + 1))
            crop = _resize(photo, rh, rw)[y:y + size, x:x + size]
            crop = np.round(crop * 255) / 255  # exactly what the 8-bit PNG will hold
            out.append((crop.astype(np.float32), {"photo": photo_id, "scale": round(scale, 4), "yx": [y, x]}))
    return out


def _build(out_dir: str | os.PathLike, params: dict, fill: Callable[[Path], dict], overwrite: bool) -> Path:
    """Write a mini dataset into a temporary folder, then swap it in; reuse an identical existing one."""
    out = Path(out_dir)
    info_path = out / "mini_info.json"
    if info_path.is_file() and json.loads(info_path.read_text()).get("params") == params:
        return out
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and holds something else. Fix: pass overwrite=True (--overwrite) or "
                              "choose another --out.")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files = fill(tmp)
        (tmp / "mini_info.json").write_text(json.dumps({"params": params, "files": files}, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _params(name: str, clean_dir, size: int, seed: int, n_train: int, n_test: int) -> dict:
    source = "skimage" if clean_dir is None else str(Path(clean_dir).resolve())
    return {"dataset": name, "version": _VERSION, "source": source, "size": size, "seed": seed,
            "n_train": n_train, "n_test": n_test}


def make_mini_cdd11(
    out_dir: str | os.PathLike, clean_dir: str | os.PathLike | None = None, size: int = 128, seed: int = 0,
    n_train: int = 24, n_test: int = 8, overwrite: bool = False,
) -> Path:
    """Build a mini CDD-11: ``{train,test}/{clear,<11 types>}/NNNNNN.png``, readable by :class:`CDD11`.

    Args:
        out_dir: output folder.
        clean_dir: photographs to crop (recursively); None uses the scikit-image photographs.
        size: crop size in pixels.
        seed: seeds the split of a folder, the crops and the synthesis.
        n_train: clean crops in train (each degraded 11 ways).
        n_test: clean crops in test.
        overwrite: replace an existing different folder.

    Returns:
        ``out_dir`` as a Path.
    """
    params = _params("mini-cdd11", clean_dir, size, seed, n_train, n_test)

    def fill(tmp: Path) -> dict:
        photos, files = clean_photos(clean_dir, seed), {}
        for s, (split, n) in enumerate((("train", n_train), ("test", n_test))):
            rng = np.random.default_rng([seed, s])  # one stream per split: test crops do not depend on n_train
            for i, (clean, prov) in enumerate(_crops(photos[split], n, size, rng), 1):
                name = f"{i:06d}.png"
                write_image(tmp / split / "clear" / name, clean)
                for kind in CDD11_TYPES:
                    write_image(tmp / split / kind / name, degrade(clean, kind, seed * 1_000_003 + s * 500_000 + i))
                files[f"{split}/{name}"] = prov
        return files

    return _build(out_dir, params, fill, overwrite)


def make_mini_allweather(
    out_dir: str | os.PathLike, clean_dir: str | os.PathLike | None = None, size: int = 128, seed: int = 0,
    n_train: int = 24, n_test: int = 8, overwrite: bool = False,
) -> Path:
    """Build a mini AllWeather in TransWeather's layout, readable by :class:`AllWeather`.

    ``train/allweather/{input,gt}`` holds every train crop three times (snow with Snow100K's mixed flake sizes,
    Outdoor-Rain rain + haze, raindrops), listed in ``train/allweather.txt``; ``test/<subset>/{input,gt}`` holds
    ``n_test`` crops for each of Snow100K-S (small flakes), Snow100K-L (large flakes), Outdoor-Rain and RainDrop.
    File names follow the sources' conventions (``im_NNNN_sSS_aAA``, ``N_rain``/``N_clean``), which the loader uses
    to pair test files and to tell the training types apart. Arguments as in :func:`make_mini_cdd11`.
    """
    params = _params("mini-allweather", clean_dir, size, seed, n_train, n_test)

    def pairs_for(
        kind: str, k: int, clean: np.ndarray, rng: np.random.Generator, test: bool, flakes: float
    ) -> tuple[str, str, np.ndarray]:
        """(input stem, target stem, degraded image) in the source's naming convention."""
        if kind == "snow":
            return f"snow_{k:05d}", f"snow_{k:05d}", degrade(clean, "snow", seed * 1_000_003 + k, snow_size=flakes)
        if kind == "raindrop":
            out = degrade(clean, "raindrop", seed * 1_000_003 + k)
            return f"{k}_rain", f"{k}_clean" if test else f"{k}_rain", out
        strength, airlight = rng.uniform(0.35, 0.6), rng.uniform(0.6, 0.9)
        stem = f"im_{k:04d}_s{round(strength * 100):02d}_a{round(airlight * 100):02d}"
        out = degrade(clean, "rain_haze", seed * 1_000_003 + k, rain_intensity=strength, haze_airlight=airlight)
        return stem, stem if not test else stem.split("_s")[0], out

    def fill(tmp: Path) -> dict:
        photos, files, listing = clean_photos(clean_dir, seed), {}, []
        rng = np.random.default_rng([seed, 0])
        base = tmp / "train" / "allweather"
        for k, (clean, prov) in enumerate(_crops(photos["train"], n_train, size, rng), 1):
            for kind in ("snow", "rain_haze", "raindrop"):
                stem, gt_stem, out = pairs_for(kind, k, clean, rng, False, float(rng.uniform(0.6, 1.6)))
                write_image(base / "input" / f"{stem}.png", out)
                write_image(base / "gt" / f"{gt_stem}.png", clean)
                listing.append(f"./allweather/input/{stem}.png")
                files[f"train/allweather/input/{stem}.png"] = prov
        (tmp / "train" / "allweather.txt").write_text("\n".join(listing) + "\n")
        rng = np.random.default_rng([seed, 1])  # one stream per split: test crops do not depend on n_train
        test_crops = _crops(photos["test"], n_test, size, rng)
        for subset, (folder, _, kind, _) in ALLWEATHER_SUBSETS.items():
            flakes = 0.6 if subset == "snow100k-s" else 1.6
            for k, (clean, prov) in enumerate(test_crops, 1):
                stem, gt_stem, out = pairs_for(kind, 100_000 + k, clean, rng, True, flakes)
                write_image(tmp / "test" / folder / "input" / f"{stem}.png", out)
                write_image(tmp / "test" / folder / "gt" / f"{gt_stem}.png", clean)
                files[f"test/{folder}/input/{stem}.png"] = prov
        return files

    return _build(out_dir, params, fill, overwrite)
