"""Metrics and evaluation: BT.601 Y, PSNR/SSIM against scikit-image, offline metrics, per-type table, results files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from m2restore.eval import AVERAGE, MetricSet, evaluate, psnr, rgb_to_y, ssim
from m2restore.eval.metrics import prepare


def _pair(seed: int = 0, size: tuple[int, int] = (40, 52), noise: float = 0.08) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(1, 3, *size, generator=g)
    pred = (target + noise * torch.randn(1, 3, *size, generator=g)).clamp(0, 1)
    return prepare(pred), prepare(target)


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).double().numpy()


def test_y_is_bt601_reference_values():
    # MATLAB rgb2ycbcr / BasicSR: Y = 16 + 65.481 R + 128.553 G + 24.966 B on a 0-255 scale
    colours = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.25, 0.75]])
    expected = torch.tensor([16.0, 235.0, 81.481, 144.553, 40.966, 16 + 65.481 * 0.5 + 128.553 * 0.25 + 24.966 * 0.75])
    img = colours.T.reshape(1, 3, 1, -1)  # (1, 3, 1, 6)
    torch.testing.assert_close(rgb_to_y(img).flatten() * 255, expected, atol=1e-4, rtol=0)


def test_pyiqa_ycbcr_matches_reference_and_yiq_does_not():
    from pyiqa.utils.color_util import to_y_channel

    _, img = _pair(1)
    torch.testing.assert_close(to_y_channel(img, 1.0, "ycbcr"), rgb_to_y(img), atol=1e-6, rtol=0)
    assert not torch.allclose(to_y_channel(img, 1.0, "yiq"), rgb_to_y(img), atol=1e-3)  # pyiqa's default differs


@pytest.mark.parametrize("crop", [0, 4])
def test_psnr_matches_skimage(crop):
    pred, target = _pair(2)
    p, t = prepare(pred, crop), prepare(target, crop)
    ref_rgb = peak_signal_noise_ratio(_hwc(t), _hwc(p), data_range=1.0)
    y_t, y_p = rgb_to_y(t)[0, 0].double().numpy(), rgb_to_y(p)[0, 0].double().numpy()
    ref_y = peak_signal_noise_ratio(y_t, y_p, data_range=1.0)
    assert psnr(p, t, "rgb").item() == pytest.approx(ref_rgb, abs=1e-4)
    assert psnr(p, t, "y").item() == pytest.approx(ref_y, abs=1e-4)
    scores = MetricSet(["psnr"], crop_border=crop)(pred, target)
    assert scores["psnr_rgb"][0] == pytest.approx(ref_rgb, abs=1e-4)


def test_ssim_matches_skimage():
    pred, target = _pair(3)
    opts = {"data_range": 255, "gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    ref_rgb = structural_similarity(_hwc(target) * 255, _hwc(pred) * 255, channel_axis=2, **opts)
    y_t = np.round(rgb_to_y(target)[0, 0].double().numpy() * 255)  # pyiqa rounds Y to 8-bit levels like MATLAB
    y_p = np.round(rgb_to_y(pred)[0, 0].double().numpy() * 255)
    ref_y = structural_similarity(y_t, y_p, **opts)
    assert ssim(pred, target, "rgb").item() == pytest.approx(ref_rgb, abs=1e-4)
    assert ssim(pred, target, "y").item() == pytest.approx(ref_y, abs=1e-4)


def test_prepare_quantizes_and_crops():
    x = torch.full((1, 3, 10, 12), 0.5021)  # 128.04 / 255
    out = prepare(x, crop_border=2)
    assert out.shape == (1, 3, 6, 8)
    assert torch.allclose(out, torch.full_like(out, 128 / 255))
    with pytest.raises(ValueError, match="crop_border"):
        prepare(x, crop_border=5)


def test_missing_weights_are_skipped_with_a_message(tmp_path, monkeypatch):
    from pyiqa.utils import download_util

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(download_util, "DEFAULT_CACHE_DIR", str(tmp_path / "hub" / "pyiqa"))
    metrics = MetricSet(["psnr", "lpips"])
    assert "lpips" in metrics.skipped and "not on disk" in metrics.skipped["lpips"]
    assert str(tmp_path) in metrics.skipped["lpips"]
    assert metrics.columns == ["psnr_rgb", "psnr_y"]
    assert not any(tmp_path.rglob("*.pth"))  # nothing was downloaded
    with pytest.raises(ValueError, match="unknown metric"):
        MetricSet(["psnr", "no_such_metric"])


class _Darken(nn.Module):
    """A 'model' with a known output: the input times a constant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.9


class _Items(torch.utils.data.Dataset):
    """Two types with unequal counts, so the mean of per-type means differs from the mean over images."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.items = []
        for i, kind in enumerate(["rain", "haze", "haze", "haze"]):
            target = torch.rand(3, 24, 20, generator=g)
            noisy = (target + (0.02 + 0.05 * i) * torch.randn(3, 24, 20, generator=g)).clamp(0, 1)
            self.items.append({"input": noisy, "target": target, "type": kind, "name": f"{kind}/{i:03d}"})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def test_evaluate_per_type_table_and_files(tmp_path):
    data = _Items()
    res = evaluate(_Darken(), data, device="cpu", out_dir=tmp_path, save_images=tmp_path / "img", progress=False)
    assert res.columns == ["psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y"]
    direct = [psnr(prepare(it["input"][None] * 0.9), prepare(it["target"][None])).item() for it in data.items]
    assert [r["psnr_rgb"] for r in res.rows] == pytest.approx(direct, abs=1e-5)
    rain, haze = direct[0], sum(direct[1:]) / 3
    assert res.per_type["haze"]["count"] == 3
    assert res.per_type["haze"]["psnr_rgb"] == pytest.approx(haze, abs=1e-5)
    assert res.average["psnr_rgb"] == pytest.approx((rain + haze) / 2, abs=1e-5)
    assert res.average["psnr_rgb"] != pytest.approx(sum(direct) / 4, abs=1e-3)
    doc = json.loads((tmp_path / "results.json").read_text())
    proto = doc["protocol"]
    assert proto["crop_border"] == 0 and proto["quantize_8bit"] is True and "BT.601" in proto["y_definition"]
    assert "cpu" in proto["hardware"] and proto["images"] == 4 and proto["scan_backend"] is None
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert lines[0].startswith("type,count,psnr_rgb") and lines[-1].startswith(AVERAGE)
    assert len((tmp_path / "per_image.csv").read_text().splitlines()) == 5
    assert sorted(p.name for p in (tmp_path / "img" / "haze").iterdir()) == ["001.png", "002.png", "003.png"]
    assert "average" in res.table() and len(res.to_frame()) == 3


def test_official_lightning_checkpoint_goes_through_the_same_evaluation(tmp_path):
    from m2restore import build_model
    from m2restore.train import CheckpointError

    torch.manual_seed(0)
    model = build_model("adair_tiny").eval()
    lightning = {"state_dict": {f"net.{k}": v for k, v in model.state_dict().items()}, "epoch": 149}
    torch.save(lightning, tmp_path / "adair.ckpt")
    data = _Items()
    ours = evaluate(model, data, device="cpu", progress=False)
    official = evaluate(tmp_path / "adair.ckpt", data, model_name="adair_tiny", device="cpu", progress=False)
    assert official.protocol["kind"] == "official" and len(official.protocol["checkpoint_sha256"]) == 16
    assert [r["psnr_y"] for r in official.rows] == pytest.approx([r["psnr_y"] for r in ours.rows], abs=1e-6)
    with pytest.raises(CheckpointError, match="--model"):
        evaluate(tmp_path / "adair.ckpt", data, device="cpu", progress=False)
    with pytest.raises(CheckpointError, match="does not fit"):
        evaluate(tmp_path / "adair.ckpt", data, model_name="promptir_tiny", device="cpu", progress=False)
