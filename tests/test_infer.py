"""Tiled inference and restoring files: tiled == untiled, bounded tile size, bad inputs skipped, inputs kept."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from m2restore import build_model
from m2restore.data.io import read_image
from m2restore.infer import _starts, plan_outputs, restore_paths, tiled_forward


class _Pointwise(nn.Module):
    """A per-pixel model (1x1 conv): tiling must reproduce it exactly, seams included."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.largest = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.largest = max(self.largest, x.shape[-1], x.shape[-2])
        return torch.sigmoid(self.conv(x))


class _Half(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.5


@pytest.mark.parametrize("name", ["adair_tiny", "promptir_tiny"])
def test_tiled_equals_untiled_below_one_tile(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        ref = model(x)
    out = tiled_forward(model, x, tile=64, overlap=16)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("tile,overlap", [(32, 8), (48, 0), (40, 30)])
def test_tiles_blend_exactly_and_stay_small(tile, overlap):
    torch.manual_seed(0)
    model = _Pointwise()
    x = torch.rand(2, 3, 101, 77)
    with torch.no_grad():
        ref = model(x)
    model.largest = 0
    out = tiled_forward(model, x, tile=tile, overlap=overlap)
    assert out.device.type == "cpu" and out.shape == x.shape
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    assert model.largest == tile  # the model never saw more than one tile


def test_tile_origins_cover_the_image():
    assert _starts(100, 32, 8) == [0, 24, 48, 68]
    assert _starts(30, 32, 8) == [0]
    with pytest.raises(ValueError, match="overlap"):
        tiled_forward(_Half(), torch.rand(1, 3, 50, 50), tile=16, overlap=16)


def test_tiled_preset_on_a_large_image():
    torch.manual_seed(0)
    model = build_model("adair_tiny").eval()
    out = tiled_forward(model, torch.rand(1, 3, 150, 97), tile=64, overlap=16)
    assert out.shape == (1, 3, 150, 97) and torch.isfinite(out).all()


def _write_inputs(folder):
    """One file of every awkward kind: gray, RGBA, 16-bit, corrupt, empty, and a text file to ignore."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / "good.png")
    Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8), "L").save(folder / "gray.png")
    Image.fromarray(rng.integers(0, 256, (20, 24, 4), dtype=np.uint8), "RGBA").save(folder / "rgba.png")
    import cv2

    sixteen = rng.integers(0, 65536, (20, 24, 3), dtype=np.uint16)
    cv2.imwrite(str(folder / "sixteen.png"), sixteen)
    (folder / "corrupt.png").write_bytes(b"this is not a png at all")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    return sixteen[..., ::-1].astype(np.float64) / 65535  # RGB in [0, 1]


def test_restore_skips_bad_files_and_never_overwrites_inputs(tmp_path):
    src = tmp_path / "photos"
    sixteen = _write_inputs(src)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    with pytest.warns(UserWarning):
        report = restore_paths(_Half(), [src, tmp_path / "missing.png"], src, tile=16, overlap=4, progress=False)
    written = {a.name: b.name for a, b in report.written}
    assert written == {"good.png": "good_restored.png", "gray.png": "gray_restored.png",
                       "rgba.png": "rgba_restored.png", "sixteen.png": "sixteen_restored.png"}
    skipped = {p.name for p, _ in report.skipped}
    assert skipped == {"corrupt.png", "empty.jpg", "missing.png"}
    assert all(reason for _, reason in report.skipped)
    assert {p.name: p.read_bytes() for p in src.iterdir() if p.name in before} == before  # inputs untouched
    out = read_image(src / "sixteen_restored.png")
    np.testing.assert_allclose(out, 0.5 * sixteen, atol=1 / 255)  # 16-bit read at full range, then halved
    gray = read_image(src / "gray_restored.png")
    assert gray.shape == (20, 24, 3) and np.allclose(gray[..., 0], gray[..., 2])


def test_plan_outputs_keeps_names_distinct(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / sub / "x.png")
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / sub / "x.jpg")
    pairs, skipped = plan_outputs([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    outs = [b.name for _, b in pairs]
    assert not skipped and len(set(outs)) == 4 and "x.png" in outs and "x_2.png" in outs
