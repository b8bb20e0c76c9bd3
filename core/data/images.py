"""Reading and writing images as float32 RGB tensors in [0, 1].

Formats: PNG, JPEG, BMP and TIFF (read through Pillow; 16-bit colour TIFF through tifffile).
Every stored layout is converted to 3-channel RGB by a fixed, documented rule, never guessed:

==========================  ==================================================================
stored as                   returned as
==========================  ==================================================================
RGB, 8 bit                  ``value / 255``
RGB / RGBA, 16 bit          ``value / 65535`` (full 16-bit precision, not truncated to 8 bits)
grayscale L, 8 bit          replicated to R = G = B, ``value / 255``
grayscale I;16, 16 bit      replicated to R = G = B, ``value / 65535``
grayscale I (32-bit int)    read as 16-bit: ``value / 65535``; values above 65535 are an error
grayscale F (32-bit float)  replicated; values must already lie in [0, 1], else an error
bilevel (1)                 black 0, white 1, replicated
RGBA, LA, PA (any alpha)    the alpha channel is DROPPED; colour kept as stored (NOT composited
                            onto a background). SR works on the colour samples only.
palette (P)                 looked up in the palette -> RGB (palette transparency dropped)
CMYK, YCbCr, LAB, HSV       converted to RGB by Pillow (CMYK: Pillow's naive conversion,
                            no ICC colour management)
==========================  ==================================================================

Only the first frame of a multi-frame file is read. EXIF orientation is NOT applied and ICC
profiles are ignored: pixels are returned as stored, like the published SR benchmarks use them.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from srcompress.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "image_size", "read_image", "save_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_FORMATS = ["PNG", "JPEG", "BMP", "TIFF"]
_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
# Pillow decodes 16-bit colour PNG samples to 8 bits. Decoding the same data with the byte-swapped
# raw mode yields the low bytes instead (same bits per pixel, so PNG unfiltering is unchanged).
_PNG16_LOW_BYTES = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L", "LA;16B": "RGBA"}
_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def _fix_hint(path: Path) -> str:
    return f"re-export {path.name} as PNG, JPEG, BMP or TIFF, or remove it from {path.parent}"


def _png16_colour(path: Path, image: Image.Image) -> np.ndarray | None:
    """Full-precision uint16 (H, W, C) of a 16-bit colour or grey-alpha PNG, or None if not one."""
    rawmode = image.tile[0].args if image.format == "PNG" and image.tile else None
    if not isinstance(rawmode, str) or rawmode not in _PNG16_LOW_BYTES:
        return None
    with Image.open(path, formats=["PNG"]) as low_image:
        low_image.tile = [low_image.tile[0]._replace(args=_PNG16_LOW_BYTES[rawmode])]
        low = np.asarray(low_image, dtype=np.uint16)
    if rawmode == "LA;16B":  # decoded as raw bytes: (L_high, L_low, A_high, A_low)
        return (low[..., :1] << 8) | low[..., 1:2]
    high = np.asarray(image, dtype=np.uint16)
    return (high << 8) | low


def _tiff16_colour(path: Path, image: Image.Image) -> np.ndarray | None:
    """uint16 (H, W, C) of a 16-bit RGB(A) TIFF through tifffile, or None if not one."""
    rawmode = image.tile[0].args[0] if image.tile and isinstance(image.tile[0].args, tuple) else ""
    if image.mode not in ("RGB", "RGBA") or ";16" not in str(rawmode):
        return None
    import tifffile  # a dependency of scikit-image; only needed for 16-bit colour TIFF

    array = tifffile.imread(path, key=0)
    if array.dtype != np.uint16 or array.ndim != 3:
        raise DataError(f"{path}: unsupported TIFF layout {array.dtype} {array.shape}; {_fix_hint(path)}")
    return array


def _to_float(array: np.ndarray, path: Path) -> np.ndarray:
    """uint8 / uint16 / int32 / float32 array -> float32 in [0, 1] by the rule in the module docs."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype in (np.uint16, np.dtype(">u2"), np.dtype("<u2")):
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.integer):  # Pillow mode I: read as 16-bit samples
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise DataError(f"{path}: 32-bit integer pixels outside 0..65535; save it as 8- or 16-bit, {_fix_hint(path)}")
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (not np.isfinite(array).all() or array.min() < 0 or array.max() > 1):
            raise DataError(f"{path}: floating-point pixels outside [0, 1]; save it as 8- or 16-bit, {_fix_hint(path)}")
        return array.astype(np.float32)
    raise DataError(f"{path}: unsupported pixel type {array.dtype}; {_fix_hint(path)}")


def _decode(path: Path) -> np.ndarray:
    """(H, W, 3) float32 array in [0, 1]."""
    with Image.open(path, formats=_FORMATS) as image:
        deep = _png16_colour(path, image)
        if deep is None and image.format == "TIFF":
            deep = _tiff16_colour(path, image)
        if deep is not None:
            array = deep
        elif image.mode in ("RGB", "L", "I", "F", "1") or image.mode.startswith("I;16"):
            array = np.asarray(image)
        elif image.mode in ("RGBA", "RGBX", "RGBa"):
            array = np.asarray(image)[..., :3]
        elif image.mode in ("LA", "La"):
            array = np.asarray(image)[..., :1]
        else:  # P, PA, CMYK, YCbCr, LAB, HSV
            array = np.asarray(image.convert("RGB"))
    array = _to_float(np.asarray(array), path)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return array[:, :, :3]


def read_image(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an image file as a float32 RGB tensor (3, H, W) in [0, 1].

    Grayscale is replicated to three channels, alpha is dropped, 16-bit samples are divided by
    65535; see the module documentation for every rule.

    :raises DataError: the file is missing, not an image, corrupted or truncated, or of a pixel
        type with no stated rule; the one-line message names the file and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file not found: {path}; check the path (dataset folders hold PNG/JPEG/BMP/TIFF files)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            array = _decode(path)
    except DataError:
        raise
    except _READ_ERRORS as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read image {path} ({reason}); the file is corrupted or not a PNG/JPEG/BMP/TIFF: {_fix_hint(path)}") from exc
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(height, width) of an image file, read from its header without decoding the pixels.

    :raises DataError: like :func:`read_image`.
    """
    path = Path(path)
    try:
        with Image.open(path, formats=_FORMATS) as image:
            width, height = image.size
    except FileNotFoundError as exc:
        raise DataError(f"image file not found: {path}; check the path") from exc
    except _READ_ERRORS as exc:
        raise DataError(f"cannot read image {path} ({exc}); {_fix_hint(path)}") from exc
    return height, width


def save_image(image: torch.Tensor, path: str | os.PathLike[str]) -> Path:
    """Write an RGB image (3, H, W) or (1, 3, H, W), float in [0, 1], as 8-bit RGB.

    Values are clamped to [0, 1] and rounded to the nearest of 256 levels (``round(x * 255)``).
    The format follows the suffix (.png, .jpg/.jpeg at quality 95, .bmp, .tif/.tiff). The file is
    written to a temporary name beside ``path`` and renamed, so a reader never sees half a file.
    Parent folders are created. Returns ``path``.
    """
    path = Path(path)
    fmt = _SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"cannot save {path}: unknown image suffix {path.suffix!r}; use one of {', '.join(_SAVE_FORMATS)}")
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"save_image takes an RGB tensor (3, H, W) or (1, 3, H, W) (got shape {tuple(image.shape)})")
    pixels = (image.detach().to("cpu", torch.float64).clamp(0, 1) * 255).round().to(torch.uint8)
    array = pixels.permute(1, 2, 0).contiguous().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            options = {"quality": 95} if fmt == "JPEG" else {}
            Image.fromarray(array, mode=None).save(handle, format=fmt, **options)
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return path
