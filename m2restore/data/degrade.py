"""Degradation synthesis for CDD-11 and AllWeather style data (numpy/scipy, offline, seeded).

Physics follows OneRestore's released synthesis (``gy65896/OneRestore`` ``syn_data/syn_data.py``), applied in its
order low light -> rain/snow -> haze:

- low light: ``J / L * L**gamma + n`` with gamma in [2, 3], Gaussian ``n`` with sigma in [0.03, 0.08], where the
  effective ``L`` is OneRestore's guided filter (3x3 box, eps 0.01) of the gray image guided by an illumination map;
- rain: ``J + S`` with a streak mask ``S``; snow: ``J * (1 - M) + M`` with a snow mask ``M`` (white flakes);
- haze: ``J * t + A * (1 - t)``, ``t = exp(-beta * min(1 - blur(nearness), 0.7))``, beta in [1, 2], A in [0.6, 0.9].

AllWeather's three: ``snow`` (Snow100K, same snow model, ``snow_size`` picks small/large flakes), ``rain_haze``
(Outdoor-Rain: heavier, blurrier streaks, then haze) and ``raindrop`` (drops on glass refracting a defocused, inverted
view of the scene). ``noise`` is additive white Gaussian noise (``noise_sigma`` on the 0-255 scale).

What OneRestore read from files we cannot have offline is procedural here: the streak and snow mask banks, the
MegaDepth depth map and the LIME light map. Each substitute and the reason is listed in ``README_substitutes.md``.

Seeding: each component draws from its own generator seeded by ``(seed, component name)``, so for one seed the rain
of ``rain``, ``low_rain`` and ``low_haze_rain`` is the same mask and the haze of ``haze`` and ``haze_rain`` has the
same transmission and airlight. A composite therefore contains exactly its parts, which is what OneRestore's
composite-degradation contrastive loss expects of negatives and what the tests check.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

__all__ = [
    "ALLWEATHER_TYPES",
    "CDD11_TYPES",
    "DEGRADATION_TYPES",
    "SynthesisConfig",
    "components_of",
    "default_config",
    "degrade",
    "guided_filter",
    "haze_nearness",
    "illumination_map",
    "rain_mask",
    "snow_mask",
]

CDD11_TYPES = [
    "low", "haze", "rain", "snow", "low_haze", "low_rain", "low_snow", "haze_rain", "haze_snow", "low_haze_rain",
    "low_haze_snow",
]
ALLWEATHER_TYPES = ["snow", "rain_haze", "raindrop"]
DEGRADATION_TYPES = tuple(dict.fromkeys([*CDD11_TYPES, *ALLWEATHER_TYPES, "noise"]))

_ORDER = ("low", "rain", "snow", "raindrop", "haze", "noise")  # OneRestore: low light -> rain/snow -> haze
_GRAY = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601 luma, as cv2.cvtColor(..., COLOR_*2GRAY)

Range = float | tuple[float, float]


@dataclass(frozen=True)
class SynthesisConfig:
    """Parameters of every component; a ``(lo, hi)`` tuple is drawn uniformly per image, a float is fixed.

    Sizes and densities describe a scene imaged at about 256 pixels; ``scale`` is the resolution relative to that
    (e.g. ``min(H, W) / 256`` for a full photograph): it multiplies every size and divides densities per pixel by
    its square, so the same scene gets the same number of streaks, flakes and drops at any resolution.
    """

    scale: float = 1.0  # resolution relative to a 256 px scene
    # low light (OneRestore ranges)
    low_gamma: Range = (2.0, 3.0)  # gamma of L**gamma
    low_noise: Range = (0.03, 0.08)  # sigma of the additive Gaussian noise, [0, 1] scale
    # rain streaks (procedural substitute for RainStreakGen masks): two layers, far (thin, dense) and near
    rain_density: Range = (0.004, 0.010)  # streak seeds per pixel, far layer (near layer: a quarter)
    rain_length: Range = (10.0, 22.0)  # streak length in pixels, far layer (near layer: twice)
    rain_angle: Range = (-20.0, 20.0)  # degrees from vertical, shared by all streaks of one image
    rain_width: float = 0.6  # Gaussian sigma across a streak, pixels
    rain_intensity: Range = (0.25, 0.55)  # peak brightness added by a near-layer streak
    rain_blur: float = 0.0  # extra Gaussian blur of the mask, pixels (Outdoor-Rain streaks are veiled)
    # snow (procedural substitute for the Snow100K mask bank): three layers of soft flakes
    snow_density: Range = (0.004, 0.010)  # flakes per pixel, smallest layer (then 1/4 and 1/16)
    snow_size: float = 1.0  # flake size multiplier: Snow100K-S ~ 0.6, Snow100K-L ~ 1.6
    snow_opacity: Range = (0.6, 1.0)  # peak opacity of a flake
    # haze (OneRestore ranges; nearness is the procedural substitute for the MegaDepth map)
    haze_beta: Range = (1.0, 2.0)  # scattering coefficient
    haze_airlight: Range = (0.6, 0.9)  # global atmospheric light A (gray)
    haze_cap: float = 0.7  # t = exp(-beta * min(1 - nearness, cap))
    haze_horizon: Range = (0.3, 0.6)  # ground-plane prior: rows above this fraction of the height are far
    # raindrops on glass
    drop_count: Range = (25.0, 80.0)  # drops per 256 x 256 scene
    drop_radius: Range = (4.0, 18.0)  # pixels
    drop_magnification: Range = (3.0, 8.0)  # a drop images a region this many times wider, inverted
    drop_defocus: float = 3.0  # Gaussian blur of the scene seen through a drop, pixels
    drop_blur: Range = (1.0, 4.0)  # defocus of the drops themselves, pixels
    drop_veil: Range = (0.02, 0.12)  # uniform glare of the glass
    # additive white Gaussian noise (the denoising task)
    noise_sigma: Range = 25.0  # on the 0-255 scale, as in the denoising literature


_OUTDOOR_RAIN = SynthesisConfig(
    rain_density=(0.008, 0.016), rain_length=(18.0, 36.0), rain_intensity=(0.35, 0.6), rain_width=0.9,
    rain_blur=0.8, haze_beta=(0.8, 1.6),
)


def default_config(kind: str) -> SynthesisConfig:
    """The default parameters for one degradation kind (Outdoor-Rain's heavy rain for ``rain_haze``)."""
    _check_kind(kind)
    return _OUTDOOR_RAIN if kind == "rain_haze" else SynthesisConfig()


def components_of(kind: str) -> tuple[str, ...]:
    """The components of a kind in application order, e.g. ``'haze_rain' -> ('rain', 'haze')``."""
    _check_kind(kind)
    parts = set(kind.split("_"))
    return tuple(c for c in _ORDER if c in parts)


def _check_kind(kind: str) -> None:
    if kind not in DEGRADATION_TYPES:
        raise ValueError(f"unknown degradation {kind!r}; choose one of {', '.join(DEGRADATION_TYPES)}")


def _draw(rng: np.random.Generator, value: Range) -> float:
    if isinstance(value, tuple):
        return float(rng.uniform(value[0], value[1]))
    return float(value)


def _rng(seed: int, component: str) -> np.random.Generator:
    """Independent generator per (seed, component); crc32 is stable across processes (``hash`` is not)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(component.encode())])


# ----------------------------------------------------------------------------------------------------------------
# Filters and maps
# ----------------------------------------------------------------------------------------------------------------
def _box(x: np.ndarray, size: int) -> np.ndarray:
    """Mean over a size x size window (cv2.blur with reflected borders)."""
    return ndimage.uniform_filter(x, size=size, mode="reflect")


def guided_filter(guide: np.ndarray, src: np.ndarray, size: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a size x size box, written as in OneRestore's ``guideFilter(I, p, ...)``."""
    mean_i, mean_p = _box(guide, size), _box(src, size)
    var_i = _box(guide * guide, size) - mean_i * mean_i
    cov_ip = _box(guide * src, size) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return _box(a, size) * guide + _box(b, size)


def illumination_map(img: np.ndarray) -> np.ndarray:
    """LIME-style illumination: the max-channel map, smoothed edge-preservingly (self-guided filter).

    LIME refines the max-channel map with a structure-aware optimisation; a self-guided filter with a window of
    ~3% of the image keeps strong edges and smooths texture the same way at a fraction of the cost.
    """
    t0 = img.max(axis=2)  # (H, W)
    size = max(3, round(0.03 * min(t0.shape)) | 1)
    return np.clip(guided_filter(t0, t0, size, 0.02), 0.0, 1.0)


def haze_nearness(img: np.ndarray, horizon: float) -> np.ndarray:
    """Normalised inverse depth (1 = nearest), a substitute for the MegaDepth map OneRestore used.

    Two published priors, a pixel being near if either says so: a ground plane (inverse depth grows linearly below
    the horizon, zero above) and the colour-attenuation prior of Zhu et al. (2015), depth ~ 0.12 + 0.96 * value -
    0.78 * saturation, which marks bright unsaturated regions (sky, distant haze) as far (stretched to [0, 1] per
    image, as MegaDepth's map is normalised per image). A local minimum filter removes small bright objects, as in
    that paper.
    """
    h, w = img.shape[:2]
    v = img.max(axis=2)  # (H, W)
    s = np.where(v > 1e-6, (v - img.min(axis=2)) / np.maximum(v, 1e-6), 0.0)
    cap = ndimage.minimum_filter(0.121779 + 0.959710 * v - 0.780245 * s, size=max(3, min(h, w) // 32))
    lo, hi = np.percentile(cap, [2, 98])
    far = np.clip((cap - lo) / max(hi - lo, 1e-6), 0.0, 1.0)  # (H, W) 1 = far by colour
    rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]  # (H, 1) 0 = top
    ground = np.clip((rows - horizon) / max(1.0 - horizon, 1e-6), 0.0, 1.0)  # (H, 1)
    return np.maximum(ground, 1.0 - far).astype(np.float32)  # (H, W) near if either prior says so


def _line_kernel(length: float, angle_deg: float, width: float) -> np.ndarray:
    """A blurred line segment (peak 1) with tapered ends, the footprint of one rain streak."""
    half = int(np.ceil(length / 2 + 3 * width)) + 1
    size = 2 * half + 1
    t = np.linspace(-0.5, 0.5, max(8, int(4 * length)))
    theta = np.deg2rad(angle_deg)
    ys, xs = half + t * length * np.cos(theta), half + t * length * np.sin(theta)
    kernel = np.zeros((size, size), dtype=np.float32)
    np.add.at(kernel, (np.round(ys).astype(int), np.round(xs).astype(int)), np.sqrt(np.cos(np.pi * t)))
    kernel = ndimage.gaussian_filter(kernel, max(width, 0.3))
    return kernel / max(float(kernel.max()), 1e-8)


def _scatter(h: int, w: int, count: int, amplitude: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An (H, W) image of ``count`` impulses at uniform random pixels."""
    out = np.zeros(h * w, dtype=np.float32)
    np.add.at(out, rng.integers(0, h * w, size=count), amplitude.astype(np.float32))
    return out.reshape(h, w)


def rain_mask(h: int, w: int, rng: np.random.Generator, cfg: SynthesisConfig) -> np.ndarray:
    """Procedural rain-streak mask in [0, 1]: a dense far layer and a sparse, longer, brighter near layer."""
    angle = _draw(rng, cfg.rain_angle)
    density, length, intensity = _draw(rng, cfg.rain_density), _draw(rng, cfg.rain_length), _draw(rng, cfg.rain_intensity)
    mask = np.zeros((h, w), dtype=np.float32)
    for dens, length_px, peak, width in (
        (density, length, 0.55 * intensity, cfg.rain_width),
        (density / 4, 2 * length, intensity, 1.5 * cfg.rain_width),
    ):
        count = max(1, int(dens * h * w / cfg.scale**2))
        seeds = _scatter(h, w, count, rng.uniform(0.5, 1.0, count), rng)  # (H, W)
        kernel = _line_kernel(length_px * cfg.scale, angle + rng.uniform(-3, 3), width * cfg.scale)
        mask += peak * signal.fftconvolve(seeds, kernel, mode="same").astype(np.float32)
    if cfg.rain_blur > 0:
        mask = ndimage.gaussian_filter(mask, cfg.rain_blur * cfg.scale)
    return np.clip(mask, 0.0, 1.0)


def snow_mask(h: int, w: int, rng: np.random.Generator, cfg: SynthesisConfig) -> np.ndarray:
    """Procedural snow mask in [0, 1]: three layers of soft round flakes, larger ones fewer and blurrier."""
    density = _draw(rng, cfg.snow_density)
    mask = np.zeros((h, w), dtype=np.float32)
    for level in range(3):
        sigma = (0.6 + 1.2 * level) * cfg.snow_size * cfg.scale  # flake radius ~ 2 sigma
        count = max(1, int(density / 4**level * h * w / (cfg.snow_size * cfg.scale**2)))  # larger = heavier
        peak = rng.uniform(0.5, 1.0, count) * _draw(rng, cfg.snow_opacity)
        layer = ndimage.gaussian_filter(_scatter(h, w, count, peak * 2 * np.pi * sigma**2, rng), sigma)
        mask = 1.0 - (1.0 - mask) * (1.0 - np.clip(layer, 0.0, 1.0))  # flakes occlude each other
    return mask


# ----------------------------------------------------------------------------------------------------------------
# Components: each maps (current image, clean image, rng, config) -> degraded image in [0, 1]
# ----------------------------------------------------------------------------------------------------------------
def _low_light(img: np.ndarray, clean: np.ndarray, rng: np.random.Generator, cfg: SynthesisConfig) -> np.ndarray:
    gamma, sigma = _draw(rng, cfg.low_gamma), _draw(rng, cfg.low_noise)
    gray = clean @ _GRAY  # (H, W)
    light = np.clip(guided_filter(illumination_map(clean), gray, 3, 0.01), 1e-3, 1.0)[..., None]  # (H, W, 1)
    noise = rng.standard_normal(img.shape, dtype=np.float32) * sigma
    return img / light * light**gamma + noise


def _rain(img: np.ndarray, clean: np.ndarray, rng: np.random.Generator, cfg: SynthesisConfig) -> np.ndarray:
    return img + rain_mask(*img.shape[:2], rng, cfg)[..., None]


def _snow(img: np.ndarray, clean: np.ndarray, rng: np.random.Generator, cfg: SynthesisConfig) -> np.ndarray:
    mask = snow_mask(*img.shape[:2], rng, cfg)[..., None]  # (H, W, 1)
    return img * (1.0 - mask) + mask


def _haze(img: np.ndarray, clean: np.ndarray, rng: np.random.Generator, cfg: SynthesisConfig) -> np.ndarray:
    beta, airlight = _draw(rng, cfg.haze_beta), _draw(rng, cfg.haze_airlight)
    near = haze_nearness(clean, _draw(rng, cfg.haze_horizon))
    near = _box(near, max(3, round(22 / 720 * min(near.shape))))  # OneRestore: cv2.blur(depth, (22, 22))
    t = np.exp(-beta * np.minimum(1.0 - near, cfg.haze_cap))[..., None]  # (H, W, 1)
    return img * t + airlight * (1.0 - t)


def _raindrop(img: np.ndarray, clean: np.ndarray, rng: np.random.Generator, cfg: SynthesisConfig) -> np.ndarray:
    h, w = img.shape[:2]
    view = ndimage.gaussian_filter(img, (cfg.drop_defocus * cfg.scale,) * 2 + (0,))  # (H, W, 3) defocused scene
    color = np.zeros_like(img)  # (H, W, 3) drop layer, premultiplied by its opacity
    opacity = np.zeros((h, w, 1), dtype=np.float32)  # (H, W, 1)
    count = max(1, round(_draw(rng, cfg.drop_count) * h * w / (256 * cfg.scale) ** 2))
    for _ in range(count):
        r = _draw(rng, cfg.drop_radius) * cfg.scale
        ry, rx = r, r * rng.uniform(0.7, 1.0)  # gravity makes drops taller than wide
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        mag = _draw(rng, cfg.drop_magnification)
        y0, y1 = max(0, int(cy - ry) - 1), min(h, int(cy + ry) + 2)
        x0, x1 = max(0, int(cx - rx) - 1), min(w, int(cx + rx) + 2)
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)  # (h', w')
        dy, dx = (yy - cy) / ry, (xx - cx) / rx
        rho2 = dy * dy + dx * dx
        alpha = np.clip((1.0 - rho2) / 0.2, 0.0, 1.0)[..., None]  # (h', w', 1) soft drop border
        src_y, src_x = cy - mag * (yy - cy), cx - mag * (xx - cx)  # a drop is a lens: wide, inverted view
        seen = np.stack(
            [ndimage.map_coordinates(view[..., c], [src_y, src_x], order=1, mode="reflect") for c in range(3)],
            axis=-1,
        )  # (h', w', 3)
        rim = 1.0 - 0.25 * np.clip(rho2, 0.0, 1.0) ** 2  # darker towards the border (total internal reflection)
        glint = 0.3 * np.exp(-((dy + 0.4) ** 2 + (dx + 0.35) ** 2) / 0.03)  # specular highlight
        drop = seen * rim[..., None] + glint[..., None]  # (h', w', 3)
        color[y0:y1, x0:x1] = color[y0:y1, x0:x1] * (1.0 - alpha) + drop * alpha
        opacity[y0:y1, x0:x1] = opacity[y0:y1, x0:x1] * (1.0 - alpha) + alpha
    blur = _draw(rng, cfg.drop_blur) * cfg.scale  # the camera focuses on the scene, so the drops are defocused
    color = ndimage.gaussian_filter(color, (blur, blur, 0))
    opacity = ndimage.gaussian_filter(opacity, (blur, blur, 0))
    veil = _draw(rng, cfg.drop_veil)  # glare of the glass plate: RainDrop inputs are brighter than their targets
    return (img * (1.0 - opacity) + color) * (1.0 - veil) + veil


def _noise(img: np.ndarray, clean: np.ndarray, rng: np.random.Generator, cfg: SynthesisConfig) -> np.ndarray:
    return img + rng.standard_normal(img.shape, dtype=np.float32) * (_draw(rng, cfg.noise_sigma) / 255.0)


_COMPONENTS = {"low": _low_light, "rain": _rain, "snow": _snow, "haze": _haze, "raindrop": _raindrop, "noise": _noise}


def degrade(
    img: np.ndarray, kind: str, seed: int, config: SynthesisConfig | None = None, **overrides: Range
) -> np.ndarray:
    """Synthesise one degraded version of a clean image.

    Args:
        img: clean ``(H, W, 3)`` float image in ``[0, 1]``.
        kind: a CDD-11 type (``'low'`` ... ``'low_haze_snow'``), ``'rain_haze'``, ``'raindrop'`` or ``'noise'``.
        seed: the same (image, kind, seed) always gives the same output.
        config: parameters; default :func:`default_config` of ``kind``.
        **overrides: replace config fields, e.g. ``noise_sigma=50`` or ``snow_size=1.6``.

    Returns:
        ``(H, W, 3)`` float32 array in ``[0, 1]``.
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype.kind != "f":
        raise ValueError(f"degrade expects an (H, W, 3) float image in [0, 1], got {img.dtype} {img.shape}")
    cfg = config or default_config(kind)
    if overrides:
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(SynthesisConfig)})
        if unknown:
            raise ValueError(f"unknown synthesis parameter(s) {unknown}; see m2restore.data.degrade.SynthesisConfig")
        cfg = dataclasses.replace(cfg, **overrides)
    clean = np.clip(img.astype(np.float32), 0.0, 1.0)
    out = clean
    for part in components_of(kind):
        out = np.clip(_COMPONENTS[part](out, clean, _rng(seed, part), cfg), 0.0, 1.0)
    return out.astype(np.float32, copy=False)
