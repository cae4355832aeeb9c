"""Image-quality metrics with the protocol spelled out: PSNR and SSIM on RGB and on the BT.601 Y channel.

Restoration papers disagree on where they measure: AllWeather papers mostly report PSNR/SSIM on the Y channel of
ITU-R BT.601 YCbCr (the BasicSR/MATLAB convention), CDD-11 papers mostly on RGB. We always compute both and label
the columns ``psnr_rgb``, ``psnr_y``, ``ssim_rgb``, ``ssim_y``.

The numbers come from ``pyiqa``'s functional PSNR/SSIM, told explicitly to use YCbCr: pyiqa's Y channel defaults to
YIQ, which differs from the papers' Y by about a dB. :func:`rgb_to_y` is the readable reference of the BT.601 luma
that the tests check pyiqa against, and ``skimage.metrics`` cross-checks the scores.

Protocol (recorded in every results file by :meth:`MetricSet.protocol`):

- images are clamped to [0, 1] and, with ``quantize=True``, rounded to 8-bit levels (what a saved PNG holds);
- ``crop_border`` pixels are removed from every side before measuring (BasicSR ``crop_border``);
- PSNR: data range 1, mean over all measured pixels and channels;
- SSIM: Gaussian window 11x11, sigma 1.5, on a 0-255 scale ('valid' filtering, MATLAB ``ssim_index``), mean of the
  per-channel maps for RGB.

Other pyiqa metrics (``lpips``, ``dists``, ``niqe``, ``musiq`` ...) are optional: they run only when their weights
are already in ``$TORCH_HOME/hub/pyiqa`` (or torchvision's cache); offline without them they are skipped with a
message saying where the file should be. ``pyiqa`` is imported lazily: it pulls in ``transformers`` and takes seconds.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

SPACES = ("rgb", "y")
BUILTIN = ("psnr", "ssim")  # computed per colour space; everything else is a pyiqa metric name
# BT.601 luma on a 0-255 scale with 'studio swing' offset 16 (MATLAB rgb2ycbcr, BasicSR bgr2ycbcr y_only)
_BT601_Y = (65.481, 128.553, 24.966)


class MetricUnavailable(RuntimeError):
    """An optional metric whose weights are not on disk (and we will not download them)."""


def rgb_to_y(img: Tensor) -> Tensor:
    """BT.601 Y of an RGB image in [0, 1], the papers' 'Y channel' (reference implementation).

    Args:
        img: (B, 3, H, W) RGB in [0, 1].

    Returns:
        (B, 1, H, W) Y in [16/255, 235/255].
    """
    w = img.new_tensor(_BT601_Y).view(1, 3, 1, 1)  # (1, 3, 1, 1)
    return (16.0 + (img * w).sum(dim=1, keepdim=True)) / 255.0  # (B, 1, H, W)


def prepare(img: Tensor, crop_border: int = 0, quantize: bool = True) -> Tensor:
    """Clamp to [0, 1], optionally round to 8-bit levels, and crop ``crop_border`` pixels from each side."""
    img = img.detach().float().clamp(0.0, 1.0)  # (B, 3, H, W)
    if quantize:
        img = torch.floor(img * 255.0 + 0.5) / 255.0  # round half up, as write_image does
    if crop_border > 0:
        if min(img.shape[-2:]) <= 2 * crop_border:
            raise ValueError(f"crop_border={crop_border} removes the whole {tuple(img.shape[-2:])} image")
        img = img[..., crop_border:-crop_border, crop_border:-crop_border]  # (B, 3, H-2c, W-2c)
    return img


def psnr(pred: Tensor, target: Tensor, space: str = "rgb") -> Tensor:
    """PSNR in dB per image (pyiqa), data range 1; ``space='y'`` measures BT.601 Y only.

    Args:
        pred: (B, 3, H, W) in [0, 1], already :func:`prepare`-d.
        target: (B, 3, H, W) in [0, 1].
        space: 'rgb' or 'y'.

    Returns:
        (B,) PSNR values.
    """
    from pyiqa.archs.psnr_arch import psnr as _psnr

    _check_space(space)
    out = _psnr(pred.double(), target.double(), test_y_channel=space == "y", data_range=1.0, color_space="ycbcr")
    return out.float().view(-1)  # (B,)


def ssim(pred: Tensor, target: Tensor, space: str = "rgb") -> Tensor:
    """SSIM per image (pyiqa, MATLAB-style: Gaussian 11x11 window, sigma 1.5, 0-255 scale).

    Args:
        pred: (B, 3, H, W) in [0, 1], already :func:`prepare`-d.
        target: (B, 3, H, W) in [0, 1].
        space: 'rgb' (mean over the three channel maps) or 'y'.

    Returns:
        (B,) SSIM values.
    """
    from pyiqa.archs.func_util import preprocess_rgb
    from pyiqa.archs.ssim_arch import ssim as _ssim

    _check_space(space)
    x = preprocess_rgb(pred, space == "y", 255, "ycbcr").double()  # (B, C, H, W) on 0-255
    y = preprocess_rgb(target, space == "y", 255, "ycbcr").double()
    return _ssim(x, y, data_range=255, downsample=False).float().view(-1)  # (B,)


def _check_space(space: str) -> None:
    if space not in SPACES:
        raise ValueError(f"colour space must be one of {SPACES}, got {space!r}")


@contextlib.contextmanager
def _no_downloads(metric: str) -> Iterator[None]:
    """Make pyiqa/torchvision raise :class:`MetricUnavailable` instead of downloading weights."""
    import torch.hub
    from pyiqa.utils import download_util

    def refuse(url: str, dst: str, *args: Any, **kwargs: Any) -> None:
        raise MetricUnavailable(
            f"metric '{metric}' needs weights that are not on disk: {dst} (from {url}). This suite never downloads "
            f"during evaluation. On a machine with network run `python -c \"import pyiqa; "
            f"pyiqa.create_metric('{metric}')\"` and copy $TORCH_HOME/hub/ here, or leave '{metric}' out of --metrics."
        )

    saved = download_util.download_url_to_file, torch.hub.download_url_to_file
    download_util.download_url_to_file = refuse
    torch.hub.download_url_to_file = refuse
    try:
        yield
    finally:
        download_util.download_url_to_file, torch.hub.download_url_to_file = saved


def parse_metrics(text: str | Sequence[str]) -> list[str]:
    """``'psnr,ssim,lpips'`` or a list -> lower-case unique names, in order."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for name in (t.strip().lower() for t in items):
        if name and name not in out:
            out.append(name)
    if not out:
        raise ValueError("no metric given; use e.g. --metrics psnr,ssim")
    return out


class MetricSet:
    """The metrics of one evaluation, callable on a (pred, target) batch.

    Args:
        metrics: names: 'psnr' and 'ssim' (one column per colour space) and any pyiqa metric name.
        spaces: colour spaces of PSNR/SSIM, a subset of ('rgb', 'y').
        crop_border: pixels removed from each side before measuring.
        quantize: round to 8-bit levels first (what a saved image holds).
        device: where the optional pyiqa networks run.
    """

    def __init__(
        self, metrics: Sequence[str] | str = BUILTIN, spaces: Sequence[str] = SPACES, crop_border: int = 0,
        quantize: bool = True, device: str | torch.device = "cpu",
    ) -> None:
        self.names = parse_metrics(metrics)
        self.spaces = tuple(spaces)
        for s in self.spaces:
            _check_space(s)
        if crop_border < 0:
            raise ValueError(f"crop_border must be >= 0, got {crop_border}")
        self.crop_border = crop_border
        self.quantize = quantize
        self.device = torch.device(device)
        self.skipped: dict[str, str] = {}  # metric -> why it is not computed
        self._extra: dict[str, Any] = {}  # pyiqa metric name -> InferenceModel
        for name in self.names:
            if name not in BUILTIN:
                self._load_extra(name)

    def _load_extra(self, name: str) -> None:
        import pyiqa

        if name not in pyiqa.list_models():
            raise ValueError(f"unknown metric '{name}': use psnr, ssim or a pyiqa metric (pyiqa.list_models())")
        try:
            with _no_downloads(name):
                self._extra[name] = pyiqa.create_metric(name, device=self.device, as_loss=False)
        except MetricUnavailable as e:
            self.skipped[name] = str(e)
            log.warning("skipping metric: %s", e)

    @property
    def columns(self) -> list[str]:
        """Result column names, in order (e.g. psnr_rgb, psnr_y, ssim_rgb, ssim_y, lpips)."""
        cols: list[str] = []
        for name in self.names:
            if name in BUILTIN:
                cols += [f"{name}_{s}" for s in self.spaces]
            elif name in self._extra:
                cols.append(name)
        return cols

    def lower_better(self, column: str) -> bool:
        """Whether a smaller value of ``column`` is better (LPIPS, NIQE ...)."""
        m = self._extra.get(column)
        return bool(m is not None and m.lower_better)

    @torch.no_grad()
    def __call__(self, pred: Tensor, target: Tensor) -> dict[str, list[float]]:
        """Score a batch.

        Args:
            pred: (B, 3, H, W) restored images (any range; clamped to [0, 1]).
            target: (B, 3, H, W) references.

        Returns:
            column -> list of B per-image values.
        """
        if pred.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        p = prepare(pred.cpu(), self.crop_border, self.quantize)  # (B, 3, h, w)
        t = prepare(target.cpu(), self.crop_border, self.quantize)
        out: dict[str, list[float]] = {}
        for name in self.names:
            if name == "psnr":
                out.update({f"psnr_{s}": psnr(p, t, s).tolist() for s in self.spaces})
            elif name == "ssim":
                out.update({f"ssim_{s}": ssim(p, t, s).tolist() for s in self.spaces})
            elif name in self._extra:
                m = self._extra[name]
                args = (p.to(self.device),) if m.metric_mode == "NR" else (p.to(self.device), t.to(self.device))
                out[name] = m(*args).detach().float().cpu().view(-1).tolist()
        return out

    def protocol(self) -> dict[str, Any]:
        """The measuring conventions, for results files (STYLE item 14)."""
        import pyiqa

        return {
            "metrics": self.columns,
            "spaces": list(self.spaces),
            "y_definition": "ITU-R BT.601 YCbCr luma (MATLAB rgb2ycbcr / BasicSR), pyiqa color_space='ycbcr'",
            "crop_border": self.crop_border,
            "quantize_8bit": self.quantize,
            "clamp": [0.0, 1.0],
            "psnr": "data range 1, pyiqa psnr (eps 1e-8 in the MSE)",
            "ssim": "pyiqa ssim: gaussian 11x11 window, sigma 1.5, 0-255 scale, valid filtering, no downsampling",
            "lower_better": [c for c in self.columns if self.lower_better(c)],
            "skipped": dict(self.skipped),
            "pyiqa_version": getattr(pyiqa, "__version__", "unknown"),
        }


def validation_psnr(pred: Tensor, target: Tensor) -> list[float]:
    """Per-image RGB PSNR as used for periodic validation during training (quantized, no crop)."""
    return psnr(prepare(pred.cpu()), prepare(target.cpu()), "rgb").tolist()
