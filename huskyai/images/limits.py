"""The limits every decoded image must meet, the error a person reads, what a header says, and the decode
budget: how much memory decoding an image will take, known from its header alone.

Each limit is set from a measurement on a 2-core machine (bench/decode.py): with them, any file of
MAX_FILE_BYTES or less is decoded or refused within about 2 s and 400 MB of extra memory. Large images are
decoded reduced (JPEG through libjpeg's scaled decoding, others by an integer box filter strip by strip), so
the budget counts the reduced result, not the full-size picture.
"""

from __future__ import annotations

from dataclasses import dataclass

from huskyai.errors import InvalidImageError

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")  # Pillow reads phones' MPO files as JPEG
MAX_FILE_BYTES = 10 * 1024 * 1024  # the app's upload limit; the bounds below are proven up to this size
MAX_PIXELS = 64_000_000  # a 48 MP phone photo (8000x6000) passes; a 20000x20000 "bomb" (400 MP) does not
MAX_SIDE = 16384  # the longest side; beyond it are only panoramas and bombs (WebP itself stops at 16383)
MAX_ASPECT = 10  # longest/shortest side: the model sees the centred square, a tenth of such a picture
MIN_SIDE = 16  # smaller than this carries nothing a 224 px model can use
MEMORY_BUDGET = 192 * 1024 * 1024  # decoded pixels + decoder buffers + the RGB result, from the header
# Decoded images are reduced while their shorter side stays at least this: twice the largest input
# (576 px) a Husky AI model uses, so the centre crop the model sees keeps its detail.
WORK_SIDE = 1152
# JPEGs are decoded by libjpeg at 1/2, 1/4 or 1/8 scale while their shorter side stays at least this:
# twice the shipped model's 288 px input, the size of the largest. A 12 MP photo then takes 0.45-0.75x
# the time to decode and resize as at WORK_SIDE, within 2 grey levels of a full decode (bench/preprocess.py).
JPEG_DRAFT_SIDE = WORK_SIDE // 2
STRIP_PIXELS = 1 << 20  # conversion to RGB works on strips this large, never on a whole copy

BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2}  # Pillow's storage; others 4
UNSUPPORTED = "not a supported image (allowed: JPEG, PNG, WebP, BMP, GIF)"


@dataclass
class Header:
    """What a file's structure says, read without decoding any pixels."""

    format: str
    width: int
    height: int
    kind: str  # for messages: "progressive JPEG", "RGBA PNG", ...
    decode_bytes: int  # decoded pixels plus decoder buffers, estimated
    mode: str = "RGB"  # Pillow's mode for the decoded image


def check_size(size: tuple[int, int], name: str, max_pixels: int = MAX_PIXELS) -> None:
    """InvalidImageError unless width x height is within the side, pixel and aspect limits."""
    w, h = size
    if min(w, h) < MIN_SIDE:
        raise InvalidImageError(f"{name}: image is {w}x{h} pixels, too small (at least {MIN_SIDE}x{MIN_SIDE})")
    if w * h > max_pixels:
        raise InvalidImageError(f"{name}: image is {w}x{h} pixels, the limit is {max_pixels / 1e6:.0f} megapixels")
    if max(w, h) > MAX_SIDE:
        raise InvalidImageError(f"{name}: image is {w}x{h} pixels, the longest side may be {MAX_SIDE} pixels")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise InvalidImageError(f"{name}: image is {w}x{h} pixels, more than {MAX_ASPECT} times as long as it is "
                                "wide (crop it closer to the subject)")


def too_large(name: str, width: int, height: int, kind: str, needed: int, budget: int) -> InvalidImageError:
    """The refusal of an image whose decoding would need more than ``budget`` bytes, naming the
    largest image of its kind that fits."""
    per_pixel = needed / (width * height)
    return InvalidImageError(f"{name}: image is {width}x{height} pixels, too large to decode safely as a {kind} "
                             f"(the limit for this kind is about {budget / per_pixel / 1e6:.0f} megapixels)")


# ---- the decode budget ------------------------------------------------------------------------------------

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
