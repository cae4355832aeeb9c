"""Image reading, writing and listing with clear errors.

Every image in the package enters through :func:`read_image`, which returns an ``(H, W, 3)`` float32 RGB array in
``[0, 1]`` whatever the file holds: grayscale is replicated to three channels, an alpha channel is dropped, 16-bit
and float files are rescaled. Each such conversion is reported once per folder and kind (a
:class:`ImageConversionWarning`) instead of once per file, so a dataset of 13,000 grayscale files gives one line.

Decoding uses OpenCV when it imports (it keeps 16-bit colour PNG/TIFF precision, which Pillow silently truncates to
8 bits) and Pillow otherwise. :func:`write_image` is atomic: it writes a temporary file beside the target and renames
it, so an interrupted run never leaves a half-written image that a later run would trust.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageConversionWarning",
    "ImageReadError",
    "image_size",
    "list_images",
    "read_image",
    "write_image",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

_REPORTED: set[tuple[str, str]] = set()  # (folder, conversion kind) pairs already reported in this process


class ImageReadError(ValueError):
    """An image file is missing, empty, corrupt or in an unsupported layout."""


class ImageConversionWarning(UserWarning):
    """A file was converted to 8-bit-range RGB (grayscale, alpha, 16-bit or float input)."""


def _note(path: Path, kind: str, detail: str) -> None:
    """Warn once per (folder, kind) that files are being converted."""
    key = (str(path.parent), kind)
    if key in _REPORTED:
        return
    _REPORTED.add(key)
    warnings.warn(
        f"{path}: {detail}; converted to RGB float in [0, 1] (further {kind} files in {path.parent} are converted "
        "silently). To silence this, convert the folder to 8-bit RGB once, e.g. with m2restore.data.write_image.",
        ImageConversionWarning,
        stacklevel=3,
    )


def _decode_cv2(path: Path) -> np.ndarray | None:
    """Decode with OpenCV (full bit depth, channels returned in RGB(A) order); None when OpenCV cannot."""
    try:
        import cv2
    except ImportError:
        return None
    data = np.fromfile(path, dtype=np.uint8)  # imdecode also copes with non-ASCII paths
    if data.size == 0:
        return None
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        return None
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    return np.ascontiguousarray(arr)


def _decode_pil(path: Path) -> np.ndarray:
    """Decode with Pillow; palette and CMYK images become RGB(A)."""
    try:
        with Image.open(path) as im:
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV", "1"):
                im = im.convert("L" if im.mode == "1" else "RGB")
            return np.asarray(im)
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(
            f"{path}: cannot decode this file ({err}). Fix: re-export it as PNG or JPEG, or delete it and its "
            "partner from the dataset."
        ) from err


def _to_rgb_float(arr: np.ndarray, path: Path) -> np.ndarray:
    """Convert any decoded array to (H, W, 3) float32 in [0, 1], noting every conversion."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16 or (arr.dtype.kind in "iu" and arr.max(initial=0) > 255):
        _note(path, "16-bit", f"{arr.dtype} samples (16-bit image)")
        out = arr.astype(np.float32) / 65535.0
    elif arr.dtype.kind in "iu":
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype.kind == "f":
        _note(path, "float", "floating-point samples, clipped to [0, 1]")
        out = np.clip(arr.astype(np.float32), 0.0, 1.0)
    elif arr.dtype == bool:
        out = arr.astype(np.float32)
    else:
        raise ImageReadError(f"{path}: unsupported sample type {arr.dtype}. Fix: re-export it as 8-bit RGB PNG.")
    if out.ndim == 2:
        _note(path, "grayscale", "grayscale image, replicated to 3 channels")
        return np.repeat(out[..., None], 3, axis=2)
    if out.ndim != 3 or out.shape[2] not in (2, 3, 4):
        raise ImageReadError(
            f"{path}: unsupported layout {arr.shape}; expected H x W with 1, 3 or 4 channels. "
            "Fix: re-export it as RGB PNG."
        )
    if out.shape[2] == 2:
        _note(path, "grayscale", "grayscale + alpha image, alpha dropped and gray replicated to 3 channels")
        return np.repeat(out[..., :1], 3, axis=2)
    if out.shape[2] == 4:
        opaque = bool(np.all(out[..., 3] >= 1.0))
        _note(path, "RGBA", "RGBA image, alpha dropped" + ("" if opaque else " (it has transparent pixels)"))
        out = out[..., :3]
    return np.ascontiguousarray(out)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB float32.

    Args:
        path: any image file OpenCV or Pillow can decode.

    Returns:
        ``(H, W, 3)`` float32 array in ``[0, 1]``.

    Raises:
        ImageReadError: the file is missing, empty, corrupt or has an unsupported layout; the message names the
            file and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file. Fix: check the path and that the dataset is fully extracted.")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: the file is empty. Fix: re-download or re-extract it.")
    arr = _decode_cv2(path)
    if arr is None:
        arr = _decode_pil(path)
    if arr.size == 0:
        raise ImageReadError(f"{path}: decoded to an empty image. Fix: re-export or delete it.")
    return _to_rgb_float(arr, path)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Return ``(height, width)`` from the file header (decodes fully only if Pillow cannot read the header).

    Raises:
        ImageReadError: the header is unreadable and the file cannot be decoded either.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
        return height, width
    except (OSError, SyntaxError, ValueError):
        return read_image(path).shape[:2]


def write_image(path: str | os.PathLike, arr: np.ndarray, quality: int = 95) -> Path:
    """Write an RGB image atomically (temporary file in the same folder, then ``os.replace``).

    Args:
        path: target file; its extension picks the format (PNG recommended: lossless).
        arr: ``(H, W, 3)`` or ``(H, W)`` float array in ``[0, 1]`` (clipped), or uint8.
        quality: JPEG/WebP quality, ignored for lossless formats.

    Returns:
        The written path.
    """
    path = Path(path)
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"write_image({path}): expected (H, W, 3) or (H, W), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"write_image({path}): unknown extension {path.suffix!r}; use .png or .jpg")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
        Image.fromarray(arr).save(tmp, format=fmt, **options)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Sorted image files of a folder (by extension, case-insensitive; hidden files skipped)."""
    folder = Path(folder)
    pattern = "**/*" if recursive else "*"
    return sorted(
        p for p in folder.glob(pattern)
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
