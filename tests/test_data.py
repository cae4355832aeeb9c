"""Tests of m2restore.data: synthesis, image I/O, loaders and their validation, mini datasets, prepare, realism."""

from __future__ import annotations

import itertools
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from m2restore.data import (
    ALLWEATHER_TYPES,
    CDD11,
    CDD11_TYPES,
    DEGRADATION_TYPES,
    AllWeather,
    DatasetError,
    ImageConversionWarning,
    ImageReadError,
    PairedFolder,
    Synthetic,
    build_dataset,
    list_datasets,
    make_mini_allweather,
    make_mini_cdd11,
    read_image,
    type_balanced_sampler,
    type_balanced_weights,
    write_image,
)
from m2restore.data.datasets import allweather_type
from m2restore.data.degrade import SynthesisConfig, components_of, degrade, rain_mask
from m2restore.data.prepare import arrange_allweather, arrange_cdd11, check_allweather, check_cdd11
from m2restore.data.realism import cdd11_test_quality, psnr_ssim, real_pairs_comparison
from m2restore.data.scripts import make_mini_cdd11_main, prepare_cdd11_main

REAL_PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_pairs"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 96 x 96 natural colour photograph (bundled with scikit-image), float32 in [0, 1]."""
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize((96, 96), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.float32) / 255.0


@pytest.fixture(scope="module")
def mini_cdd11(tmp_path_factory) -> Path:
    return make_mini_cdd11(tmp_path_factory.mktemp("m") / "cdd", size=32, n_train=2, n_test=1)


@pytest.fixture(scope="module")
def mini_allweather(tmp_path_factory) -> Path:
    return make_mini_allweather(tmp_path_factory.mktemp("m") / "aw", size=32, n_train=2, n_test=1)


def _copy_tree(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / src.name))


# ----------------------------------------------------------------------------------------------------------------
# Synthesis
# ----------------------------------------------------------------------------------------------------------------
def test_type_lists():
    assert CDD11_TYPES == ["low", "haze", "rain", "snow", "low_haze", "low_rain", "low_snow", "haze_rain", "haze_snow",
                           "low_haze_rain", "low_haze_snow"]
    assert ALLWEATHER_TYPES == ["snow", "rain_haze", "raindrop"]
    assert set(DEGRADATION_TYPES) == {*CDD11_TYPES, "rain_haze", "raindrop", "noise"}
    assert components_of("low_haze_rain") == ("low", "rain", "haze")  # OneRestore's order
    assert components_of("rain_haze") == ("rain", "haze")


@pytest.mark.parametrize("kind", DEGRADATION_TYPES)
def test_degrade_deterministic_in_range_and_changes_image(photo, kind):
    out = degrade(photo, kind, seed=3)
    assert out.shape == photo.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(out, degrade(photo.copy(), kind, seed=3))
    assert not np.array_equal(out, degrade(photo, kind, seed=4))
    assert np.abs(out - photo).mean() > 0.005


def test_every_type_differs_from_every_other(photo):
    outs = {k: degrade(photo, k, seed=1) for k in DEGRADATION_TYPES}
    for a, b in itertools.combinations(DEGRADATION_TYPES, 2):
        assert np.abs(outs[a] - outs[b]).mean() > 0.003, (a, b)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_composites_contain_their_parts(photo):
    d = {k: degrade(photo, k, seed=7) for k in CDD11_TYPES}
    streaks = d["rain"] - photo  # the rain mask (clipped where the photo is bright)
    assert _corr(d["low_rain"] - d["low"], streaks) > 0.9  # the same streaks on the dark image
    assert _corr(d["haze_rain"] - d["haze"], streaks) > 0.9  # the same streaks, attenuated by t
    assert 0.1 < np.abs(d["haze_rain"] - d["haze"]).sum() / np.abs(streaks).sum() < 1.0
    assert _corr(d["low_haze_snow"] - d["low_haze"], d["snow"] - photo) > 0.7
    assert d["low"].mean() < 0.6 * photo.mean()
    assert d["haze"].std() < 0.8 * photo.std()
    assert d["snow"].mean() > photo.mean()
    assert d["low_haze_rain"].mean() < d["haze_rain"].mean()  # contains low light
    assert d["low_haze_rain"].std() < d["rain"].std()  # lower contrast: contains low light and haze


def test_noise_sigma_configurable():
    gray = np.full((128, 128, 3), 0.5, dtype=np.float32)
    for sigma in (15, 50):
        assert np.std(degrade(gray, "noise", 0, noise_sigma=sigma) - gray) == pytest.approx(sigma / 255, rel=0.05)


def test_scale_keeps_rain_coverage():
    cov = [np.mean(rain_mask(n, n, np.random.default_rng(0), SynthesisConfig(scale=n / 128)) > 0.05)
           for n in (128, 256)]
    assert cov[1] == pytest.approx(cov[0], rel=0.3)


def test_degrade_rejects_bad_input(photo):
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(photo, "fog", 0)
    with pytest.raises(ValueError, match="float image"):
        degrade((photo * 255).astype(np.uint8), "rain", 0)
    with pytest.raises(ValueError, match="float image"):
        degrade(photo[..., 0], "rain", 0)
    with pytest.raises(ValueError, match="unknown synthesis parameter"):
        degrade(photo, "noise", 0, sigma=25)


# ----------------------------------------------------------------------------------------------------------------
# Image I/O
# ----------------------------------------------------------------------------------------------------------------
def test_read_image_converts_gray_rgba_and_16bit(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (9, 11), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    rgba = rng.integers(0, 256, (9, 11, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    g16 = rng.integers(0, 65536, (9, 11), dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "gray16.png")
    with pytest.warns(ImageConversionWarning):
        out = read_image(tmp_path / "gray.png")
    np.testing.assert_allclose(out, np.repeat(gray[..., None] / 255.0, 3, axis=2), atol=1e-6)
    with pytest.warns(ImageConversionWarning):
        np.testing.assert_allclose(read_image(tmp_path / "rgba.png"), rgba[..., :3] / 255.0, atol=1e-6)
    with pytest.warns(ImageConversionWarning):
        out = read_image(tmp_path / "gray16.png")
    np.testing.assert_allclose(out[..., 1], g16 / 65535.0, atol=1e-6)  # full 16-bit precision kept
    for arr in (out,):
        assert arr.dtype == np.float32 and arr.shape == (9, 11, 3)


def test_read_image_keeps_16bit_colour(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rgb16 = np.random.default_rng(1).integers(0, 65536, (7, 5, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])  # OpenCV writes BGR
    with pytest.warns(ImageConversionWarning, match="16-bit"):
        out = read_image(tmp_path / "rgb16.png")
    np.testing.assert_allclose(out, rgb16 / 65535.0, atol=1e-6)


def test_read_image_errors_name_the_file_and_fix(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "corrupt.png").write_bytes(b"not an image at all" * 10)
    for name in ("missing.png", "empty.png", "corrupt.png"):
        with pytest.raises(ImageReadError, match="Fix") as err:
            read_image(tmp_path / name)
        assert name in str(err.value) and isinstance(err.value, ValueError)


def test_write_image_round_trip_and_atomic(tmp_path, photo):
    path = write_image(tmp_path / "sub" / "x.png", photo)
    np.testing.assert_allclose(read_image(path), photo, atol=0.5 / 255 + 1e-6)
    write_image(path, 1.0 - photo)  # replaces an existing file
    np.testing.assert_allclose(read_image(path), 1.0 - photo, atol=0.5 / 255 + 1e-6)
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.png"]  # no temporary files left
    with pytest.raises(ValueError):
        write_image(tmp_path / "y.png", photo[..., :2])


# ----------------------------------------------------------------------------------------------------------------
# Loaders
# ----------------------------------------------------------------------------------------------------------------
def _check_item(item: dict, size: tuple[int, int]) -> None:
    for key in ("input", "target"):
        t = item[key]
        assert t.dtype == torch.float32 and tuple(t.shape) == (3, *size)
        assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    assert isinstance(item["type"], str) and isinstance(item["name"], str)


def test_cdd11_loader(mini_cdd11):
    train, test = CDD11(mini_cdd11, "train"), CDD11(mini_cdd11, "test")
    assert len(train) == 2 * 11 and len(test) == 11
    assert sorted(set(train.types)) == sorted(CDD11_TYPES)
    _check_item(test[0], (32, 32))
    assert test[0]["name"] == "low/000001" and test[0]["type"] == "low"
    assert not torch.equal(test[0]["input"], test[0]["target"])
    crops = CDD11(mini_cdd11, "train", types=["rain", "snow"], patch_size=16, augment=True)
    assert len(crops) == 4 and set(crops.types) == {"rain", "snow"}
    _check_item(crops[1], (16, 16))
    batch = next(iter(DataLoader(crops, batch_size=4)))
    assert batch["input"].shape == (4, 3, 16, 16) and len(batch["type"]) == 4


def test_patch_larger_than_image_is_padded(mini_cdd11):
    _check_item(CDD11(mini_cdd11, "test", types=["low"], patch_size=48)[0], (48, 48))


def test_allweather_loader(mini_allweather, tmp_path):
    train = AllWeather(mini_allweather, "train")
    assert len(train) == 6 and sorted(train.types) == sorted(ALLWEATHER_TYPES * 2)
    for split, kind in (("snow100k-s", "snow"), ("snow100k-l", "snow"), ("outdoor-rain", "rain_haze"),
                        ("raindrop", "raindrop")):
        ds = AllWeather(mini_allweather, split)
        assert len(ds) == 1 and ds.types == [kind]
        _check_item(ds[0], (32, 32))
    tree = _copy_tree(mini_allweather, tmp_path)
    (tree / "train" / "allweather.txt").unlink()  # without the file list: pair the folders
    assert sorted(p.name for p in AllWeather(tree, "train").pairs) == sorted(p.name for p in train.pairs)


def test_allweather_type_from_names():
    assert allweather_type("im_0001_s80_a04") == "rain_haze"
    assert allweather_type("12_rain") == "raindrop"
    assert allweather_type("beautiful_smile_00001") == "snow"


def test_paired_folder_matches_stems_across_extensions(tmp_path, photo):
    for sub in ("a", "b/c"):
        write_image(tmp_path / "in" / sub / "x.jpg", photo)
        write_image(tmp_path / "gt" / sub / "x.png", photo)
    ds = PairedFolder(tmp_path / "in", tmp_path / "gt", type="rain")
    assert [p.name for p in ds.pairs] == ["a/x", "b/c/x"] and ds.types == ["rain", "rain"]
    _check_item(ds[0], (96, 96))


def test_synthetic_dataset(tmp_path, photo):
    write_image(tmp_path / "clean" / "one.png", photo)
    write_image(tmp_path / "clean" / "deep" / "two.png", photo[::-1])
    ds = Synthetic(tmp_path / "clean", types=["rain", "low"], patch_size=32)
    assert len(ds) == 4 and ds.types == ["rain", "low", "rain", "low"]
    torch.manual_seed(0)
    a = ds[0]
    torch.manual_seed(0)
    np.testing.assert_array_equal(a["input"].numpy(), ds[0]["input"].numpy())
    _check_item(a, (32, 32))
    assert not torch.equal(a["input"], a["target"])
    full = Synthetic(tmp_path / "clean", types=["snow"], resample=True)
    assert not torch.equal(full[0]["input"], full[0]["input"])  # a fresh synthesis at every access


def test_build_dataset_registry(mini_cdd11, mini_allweather, tmp_path, photo):
    assert list_datasets() == ["allweather", "cdd11", "folder", "mini-allweather", "mini-cdd11", "synthetic"]
    assert len(build_dataset("mini-cdd11", mini_cdd11, "test", types=["haze"])) == 1
    assert len(build_dataset("cdd11", mini_cdd11, "train")) == 22
    assert len(build_dataset("mini-allweather", mini_allweather, "raindrop")) == 1
    write_image(tmp_path / "f" / "test" / "input" / "a.png", photo)
    write_image(tmp_path / "f" / "test" / "target" / "a.png", photo)
    assert len(build_dataset("folder", tmp_path / "f", "test")) == 1
    assert len(build_dataset("synthetic", tmp_path / "f" / "test", "target", types=["noise"])) == 1
    with pytest.raises(ValueError, match="unknown dataset"):
        build_dataset("imagenet", tmp_path, "train")


def test_type_balanced_sampling():
    types = ["rain"] * 6 + ["snow"] * 2
    weights = type_balanced_weights(types)
    assert weights[:6].sum().item() == pytest.approx(weights[6:].sum().item())

    class Fake:
        pass

    fake = Fake()
    fake.types = types
    draws = list(type_balanced_sampler(fake, num_samples=4000, generator=torch.Generator().manual_seed(0)))
    assert 0.45 < np.mean([types[i] == "snow" for i in draws]) < 0.55


# ----------------------------------------------------------------------------------------------------------------
# Validation: every error on a deliberately broken tree
# ----------------------------------------------------------------------------------------------------------------
def _broken_cdd11(src: Path, tmp_path: Path, damage) -> str:
    tree = _copy_tree(src, tmp_path)
    damage(tree / "test")
    with pytest.raises(DatasetError) as err:
        CDD11(tree, "test")
    assert "Fix:" in str(err.value)
    return str(err.value)


def test_missing_folder(mini_cdd11, tmp_path):
    msg = _broken_cdd11(mini_cdd11, tmp_path, lambda t: shutil.rmtree(t / "haze"))
    assert "missing folder" in msg and "haze" in msg
    with pytest.raises(DatasetError, match="no 'valid' folder"):
        CDD11(mini_cdd11, "valid")


def test_unmatched_stem(mini_cdd11, tmp_path):
    msg = _broken_cdd11(mini_cdd11, tmp_path, lambda t: (t / "clear" / "000001.png").unlink())
    assert "unmatched" in msg and "000001" in msg


def test_duplicated_stem(mini_cdd11, tmp_path):
    msg = _broken_cdd11(mini_cdd11, tmp_path, lambda t: write_image(t / "rain" / "000001.jpg", read_image(
        t / "rain" / "000001.png")))
    assert "duplicated stem" in msg and "000001.jpg" in msg


def test_size_mismatch(mini_cdd11, tmp_path):
    msg = _broken_cdd11(mini_cdd11, tmp_path, lambda t: write_image(t / "snow" / "000001.png", np.zeros((8, 8, 3))))
    assert "size mismatch" in msg and "snow/000001.png" in msg


def test_unreadable_file(mini_cdd11, tmp_path):
    msg = _broken_cdd11(mini_cdd11, tmp_path, lambda t: (t / "low" / "000001.png").write_bytes(b"garbage"))
    assert "unreadable" in msg and "low/000001.png" in msg


def test_grayscale_file_is_converted_not_rejected(mini_cdd11, tmp_path):
    tree = _copy_tree(mini_cdd11, tmp_path)
    Image.open(tree / "test" / "low" / "000001.png").convert("L").save(tree / "test" / "low" / "000001.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        item = CDD11(tree, "test", types=["low"])[0]
    _check_item(item, (32, 32))
    assert any(issubclass(w.category, ImageConversionWarning) for w in caught)


def test_allweather_list_with_missing_file(mini_allweather, tmp_path):
    tree = _copy_tree(mini_allweather, tmp_path)
    listing = tree / "train" / "allweather.txt"
    listing.write_text(listing.read_text() + "./allweather/input/ghost.png\n")
    with pytest.raises(DatasetError, match="ghost.png"):
        AllWeather(tree, "train")
    with pytest.raises(DatasetError, match="no folder named"):
        AllWeather(tmp_path / "nowhere", "raindrop")


def test_paired_folder_unmatched_and_empty(tmp_path, photo):
    write_image(tmp_path / "in" / "a.png", photo)
    write_image(tmp_path / "gt" / "b.png", photo)
    with pytest.raises(DatasetError, match="unmatched"):
        PairedFolder(tmp_path / "in", tmp_path / "gt")
    (tmp_path / "e1").mkdir()
    (tmp_path / "e2").mkdir()
    with pytest.raises(DatasetError, match="no image pairs"):
        PairedFolder(tmp_path / "e1", tmp_path / "e2")


# ----------------------------------------------------------------------------------------------------------------
# Mini datasets, prepare scripts, realism
# ----------------------------------------------------------------------------------------------------------------
def test_mini_split_is_by_photograph(mini_cdd11, mini_allweather):
    for root in (mini_cdd11, mini_allweather):
        files = json.loads((root / "mini_info.json").read_text())["files"]
        train = {v["photo"] for k, v in files.items() if k.startswith("train/")}
        test = {v["photo"] for k, v in files.items() if k.startswith("test/")}
        assert train and test and not train & test
        assert "motorcycle_right" not in train | test


def test_mini_is_reused_and_protected(mini_cdd11):
    before = (mini_cdd11 / "mini_info.json").stat().st_mtime_ns
    assert make_mini_cdd11(mini_cdd11, size=32, n_train=2, n_test=1) == mini_cdd11
    assert (mini_cdd11 / "mini_info.json").stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="overwrite"):
        make_mini_cdd11(mini_cdd11, size=24, n_train=1, n_test=1)


def test_mini_from_a_clean_folder(tmp_path, photo):
    for i, sub in enumerate(("a", "a/b", "c")):
        write_image(tmp_path / "clean" / sub / f"p{i}.png", np.roll(photo, 10 * i, axis=1))
    assert make_mini_cdd11_main(["--out", str(tmp_path / "m"), "--clean-dir", str(tmp_path / "clean"),
                                 "--size", "24", "--n-train", "2", "--n-test", "1"]) == 0
    assert len(CDD11(tmp_path / "m", "train")) == 22 and len(CDD11(tmp_path / "m", "test")) == 11


def test_arrange_and_check_cdd11(mini_cdd11, tmp_path, capsys):
    download = tmp_path / "download" / "CDD-11"
    download.mkdir(parents=True)
    for split in ("train", "test"):
        shutil.copytree(mini_cdd11 / split, download / f"CDD-11_{split}")
    root = arrange_cdd11(tmp_path / "download", tmp_path / "cdd11")
    assert (root / "train").is_symlink()
    report = check_cdd11(root)
    assert not report.problems and not report.ok  # consistent but far from the official counts
    rows = {(r["split"], r["folder"]): r for r in report.rows}
    assert rows[("test", "(pairs)")]["found"] == 11 and rows[("test", "(pairs)")]["expected"] == 2200
    assert prepare_cdd11_main(["--check", str(root)]) == 1
    assert "INCOMPLETE" in capsys.readouterr().out
    assert prepare_cdd11_main([]) == 2  # prints where to download


def test_arrange_and_check_allweather_download(mini_allweather, tmp_path):
    """A download laid out as the sources ship it: Snow100K's synthetic/, RainDrop's test_a/data/, Outdoor-Rain's test1/."""
    dl = tmp_path / "download"
    shutil.copytree(mini_allweather / "train", dl / "data" / "train")
    for folder, name, inp in (("Snow100K-S", "Snow100K-S", "synthetic"), ("Snow100K-L", "Snow100K-L", "synthetic"),
                              ("Outdoor-Rain", "test1", "input"), ("RainDrop", "test_a", "data")):
        shutil.copytree(mini_allweather / "test" / folder / "gt", dl / "test" / name / "gt")
        shutil.copytree(mini_allweather / "test" / folder / "input", dl / "test" / name / inp)
    root = arrange_allweather(dl, tmp_path / "aw")
    report = check_allweather(root, decode=True)
    assert not report.problems
    assert {r["split"]: r["found"] for r in report.rows} == {"train": 6, "snow100k-s": 1, "snow100k-l": 1,
                                                              "outdoor-rain": 1, "raindrop": 1}


def test_check_reports_broken_files(mini_allweather, tmp_path):
    tree = _copy_tree(mini_allweather, tmp_path)
    next((tree / "test" / "RainDrop" / "gt").iterdir()).write_bytes(b"broken")
    report = check_allweather(tree)
    assert any("unreadable" in p for p in report.problems) and "raindrop" in report.table()


def test_realism_of_default_mini_cdd11(tmp_path):
    """The default mini CDD-11 test set lands within 1.5 dB of the real CDD-11 test set's mean input PSNR."""
    root = make_mini_cdd11(tmp_path / "m", n_train=0)
    table = cdd11_test_quality(root)
    assert list(table.index[:11]) == CDD11_TYPES
    assert abs(table.loc["all types", "psnr"] - 16.00) < 1.5
    a, b = read_image(root / "test" / "rain" / "000001.png"), read_image(root / "test" / "clear" / "000001.png")
    from skimage.metrics import peak_signal_noise_ratio

    assert psnr_ssim(a, b)[0] == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1.0))


@pytest.mark.skipif(not REAL_PAIRS.is_dir(), reason="shared/data/real_pairs not present beside the checkout")
def test_synthetic_rain_and_haze_overlap_real_pairs():
    table = real_pairs_comparison(REAL_PAIRS, seeds=range(2), kinds={"rain": "rain", "haze": "haze"})
    for _, rows in table.groupby("category"):
        assert rows["syn_psnr_min"].min() < rows["real_psnr"].max()
        assert rows["syn_psnr_max"].max() > rows["real_psnr"].min()
