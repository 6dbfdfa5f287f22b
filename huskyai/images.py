"""Decoding untrusted images: the one door every photo passes through, in training and serving.

Formats are recognised by content, never by file name; sizes are capped before pixels are
decoded; EXIF orientation is applied and every mode ends as 8-bit RGB.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")  # Pillow reads phones' MPO files as JPEG
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 64_000_000  # a 48 MP phone photo (8000x6000) passes; a 20000x20000 "bomb" (400 MP) does not
MIN_SIDE = 16  # smaller than this carries nothing a 224 px model can use

ImageInput = str | os.PathLike | bytes | bytearray | Image.Image | np.ndarray


class InvalidImageError(ValueError):
    """The input is not an image Husky AI can read; the message says why, for a person."""


def read_limited(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """A file's bytes, refusing files over ``max_bytes`` before reading them."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InvalidImageError(f"{path.name}: file is {size / 1e6:.1f} MB, the limit is {max_bytes / 1e6:.0f} MB")
        return path.read_bytes()
    except InvalidImageError:
        raise
    except OSError as err:
        raise InvalidImageError(f"{path}: cannot read file ({err.strerror or err})") from None


def decode_bytes(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode encoded image bytes into an RGB image, or raise InvalidImageError naming ``name``."""
    if len(data) == 0:
        raise InvalidImageError(f"{name}: the file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise InvalidImageError(f"{name}: file is {len(data) / 1e6:.1f} MB, the limit is {MAX_FILE_BYTES / 1e6:.0f} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            _check_size(img.size, name, max_pixels)  # header only: nothing decoded yet
            img.load()
            img = ImageOps.exif_transpose(img)
    except InvalidImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        if isinstance(err, UnidentifiedImageError):
            raise InvalidImageError(
                f"{name}: not a supported image (allowed: JPEG, PNG, WebP, BMP, GIF)"
            ) from None
        raise InvalidImageError(f"{name}: image is too large to decode safely "
                                f"(over the limit of {max_pixels / 1e6:.0f} megapixels)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error) as err:
        # Pillow reports truncation and corrupt streams through several exception types
        reason = "the file is truncated" if "truncated" in str(err) else f"the image data is corrupt ({err})"
        raise InvalidImageError(f"{name}: {reason}") from None
    return to_rgb(img, name)


def _check_size(size: tuple[int, int], name: str, max_pixels: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise InvalidImageError(f"{name}: image is {w}x{h} pixels, the limit is {max_pixels / 1e6:.0f} megapixels")
    if min(w, h) < MIN_SIDE:
        raise InvalidImageError(f"{name}: image is {w}x{h} pixels, too small (at least {MIN_SIDE}x{MIN_SIDE})")


def to_rgb(img: Image.Image, name: str = "image") -> Image.Image:
    """8-bit RGB from any Pillow mode; transparency is composited on white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as err:
        raise InvalidImageError(f"{name}: unsupported colour mode {img.mode} ({err})") from None


def _from_array(arr: np.ndarray, name: str) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InvalidImageError(f"{name}: array of shape {arr.shape} is not an HxW, HxWx3 or HxWx4 image")
    if arr.dtype == np.uint8:
        pass
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise InvalidImageError(f"{name}: float arrays must hold values in [0, 1]")
        arr = (arr * 255.0 + 0.5).astype(np.uint8)
    else:
        raise InvalidImageError(f"{name}: array dtype {arr.dtype} is not uint8 or float in [0, 1]")
    _check_size((arr.shape[1], arr.shape[0]), name, MAX_PIXELS)
    return to_rgb(Image.fromarray(np.ascontiguousarray(arr)), name)


def describe(data: bytes | None) -> dict:
    """Format and pixel size from an image's header, without decoding it (for logs)."""
    info = {"image_format": None, "width": None, "height": None}
    if data:
        try:
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
                info.update(image_format=img.format, width=img.size[0], height=img.size[1])
        except Exception:  # noqa: BLE001 - anything unreadable is simply described as unknown
            pass
    return info


def load_image(source: ImageInput, name: str | None = None) -> Image.Image:
    """Any supported input (path, bytes, PIL image, numpy array) as a checked 8-bit RGB image."""
    if isinstance(source, (str, os.PathLike)):
        label = name or Path(source).name
        return decode_bytes(read_limited(source), label)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(source), name or "image")
    if isinstance(source, Image.Image):
        label = name or "image"
        _check_size(source.size, label, MAX_PIXELS)
        return to_rgb(ImageOps.exif_transpose(source), label)
    if isinstance(source, np.ndarray):
        return _from_array(source, name or "array")
    raise InvalidImageError(
        f"cannot read an image from {type(source).__name__}; pass a path, bytes, a PIL image or a numpy array"
    )
