"""Any Pillow mode or numpy array to 8-bit RGB, reduced by an integer box filter strip by strip, so
the only full-size copy in memory is the decoded image itself."""

from __future__ import annotations

import numpy as np
from PIL import Image

from huskyai.errors import InvalidImageError
from huskyai.images.limits import MAX_PIXELS, STRIP_PIXELS, check_size, reduction_factor


def to_rgb_reduced(img: Image.Image, name: str) -> Image.Image:
    """8-bit RGB, reduced by reduction_factor()."""
    w, h = img.size
    f = reduction_factor(w, h)
    # 32-bit samples are scaled by the whole image's largest value, never by each strip's own
    high = img.getextrema()[1] if img.mode in ("I", "F") else None
    if f == 1 and w * h <= STRIP_PIXELS:
        return to_rgb(img, name, high)
    out = Image.new("RGB", (-(-w // f), -(-h // f)))
    rows = f * max(1, STRIP_PIXELS // (w * f))
    for top in range(0, h, rows):
        strip = img.crop((0, top, w, min(h, top + rows)))
        if f > 1:  # reduce first: compositing on white is linear, so it commutes with averaging
            strip = _reducible(strip, name, high).reduce(f)
        out.paste(to_rgb(strip, name, high), (0, top // f))
    return out


def _reducible(img: Image.Image, name: str, high: float | None) -> Image.Image:
    """The image in a mode Image.reduce averages correctly (palette indices must not be averaged)."""
    if img.mode in ("L", "LA", "RGB", "RGBA"):
        return img
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info or img.palette.mode == "RGBA" else "RGB")
    if img.mode == "1":
        return img.convert("L")
    if img.mode in ("PA", "La", "RGBa"):
        return img.convert("RGBA")
    return to_rgb(img, name, high)


def to_rgb(img: Image.Image, name: str = "image", high: float | None = None) -> Image.Image:
    """8-bit RGB from any Pillow mode; transparency is composited on white; 16-bit keeps its top byte.
    32-bit samples (modes I and F) are taken as 0-65535 when ``high``, their largest value (by default
    this image's own), is over 255, else as 0-255."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16L", "I;16B"):
        # the high byte of each sample, unpacked by Pillow (no float copies): v >> 8
        rawmode = "L;16B" if img.mode == "I;16B" else "L;16"
        return Image.frombytes("L", img.size, img.tobytes(), "raw", rawmode).convert("RGB")
    if img.mode in ("I", "F"):
        high = img.getextrema()[1] if high is None else high
        scale = 255.0 / 65535.0 if high > 255 else 1.0
        return img.point(lambda v: v * scale + 0.5).convert("L").convert("RGB")
    if img.mode == "P" and "transparency" not in img.info and img.palette and img.palette.mode == "RGB":
        return img.convert("RGB")
    if img.mode in ("P", "PA", "LA", "La", "RGBA", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as err:
        raise InvalidImageError(f"{name}: unsupported colour mode {img.mode} ({err})") from None


def from_array(arr: np.ndarray, name: str) -> Image.Image:
    """An HxW, HxWx1, HxWx3 or HxWx4 array (uint8, or float in [0, 1]) as reduced 8-bit RGB."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InvalidImageError(f"{name}: array of shape {arr.shape} is not an HxW, HxWx3 or HxWx4 image")
    check_size((arr.shape[1], arr.shape[0]), name, MAX_PIXELS)
    if arr.dtype == np.uint8:
        pass
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise InvalidImageError(f"{name}: float arrays must hold values in [0, 1]")
        arr = (arr * 255.0 + 0.5).astype(np.uint8)
    else:
        raise InvalidImageError(f"{name}: array dtype {arr.dtype} is not uint8 or float in [0, 1]")
    return to_rgb_reduced(Image.fromarray(np.ascontiguousarray(arr)), name)
