"""The decode budget: how much memory decoding an image will take, known from its header alone.

Large images are decoded reduced (JPEG through libjpeg's scaled decoding, others by an integer box
filter strip by strip), so the budget counts the reduced result, not the full-size picture.
"""

from __future__ import annotations

from huskyai.images.limits import JPEG_DRAFT_SIDE, MEMORY_BUDGET, STRIP_PIXELS, WORK_SIDE, Header, check_size, too_large


def reduction_factor(width: int, height: int) -> int:
    """The integer factor a decoded image is reduced by: its shorter side stays at least WORK_SIDE."""
    return max(1, min(width, height) // WORK_SIDE)


def jpeg_draft_scale(width: int, height: int) -> int:
    """The scale (1, 2, 4 or 8) Pillow's draft picks for JPEG_DRAFT_SIDE square: libjpeg decodes at 1/scale."""
    fits = min(width // JPEG_DRAFT_SIDE, height // JPEG_DRAFT_SIDE)
    return next((a for a in (8, 4, 2) if fits >= a), 1)


def result_bytes(width: int, height: int) -> int:
    """The reduced 8-bit RGB result and the strip copies made on the way (Pillow stores RGB in 4 bytes)."""
    f = reduction_factor(width, height)
    return -(-width // f) * -(-height // f) * 4 + 3 * STRIP_PIXELS * 4


def check_budget(header: Header, name: str, max_pixels: int) -> None:
    """InvalidImageError unless the image is within the size limits and decodes within MEMORY_BUDGET."""
    check_size((header.width, header.height), name, max_pixels)
    needed = header.decode_bytes + result_bytes(header.width, header.height)
    if needed > MEMORY_BUDGET:
        raise too_large(name, header.width, header.height, header.kind, needed, MEMORY_BUDGET)
