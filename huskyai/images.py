"""Decoding untrusted images: the one door every photo passes through, in training and serving.

Formats are recognised by content, never by file name. Before Pillow sees a byte, a bounded walk of
the file's own structure reads its size and everything that would make decoding slow or large
(JPEG scans and marker floods, PNG chunk floods, GIF comment floods, RLE-compressed BMP, EXIF and
MPF directories that Pillow parses on open), estimates the memory decoding needs, and refuses what is
over the limits, with a message for a person. Large JPEGs are then decoded reduced (``draft``), other
formats are reduced by an integer box filter strip by strip, EXIF orientation is applied on the small
result and every mode ends as 8-bit RGB.

What this bounds (measured by ``bench/decode.py``): any file of MAX_FILE_BYTES or less is decoded or
refused within about 2 s and 400 MB of extra memory on a 2-core machine.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

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

# Work Pillow does in Python per structure element, bounded here (each measured at 2-50 us a piece):
JPEG_MAX_HEADER_SEGMENTS = 512  # markers before the first scan (a phone photo has about 15)
JPEG_MAX_JUNK = 1024  # bytes of fill or junk between those markers, skipped one by one
JPEG_MAX_PHOTOSHOP_BLOCKS = 1024  # 8BIM resource blocks, parsed in Python on open
JPEG_MAX_EXIF_SEGMENTS = 8  # the standard has one; Pillow concatenates each further one to the last
JPEG_MAX_SCANS = 64  # libjpeg's progressive script has 10; each scan walks every block it covers
JPEG_MAX_SCAN_BLOCKS = 16_000_000  # 8x8 blocks summed over all scans, ~30 ns each (a 48 MP progressive photo: ~6M)
JPEG_MAX_SEGMENTS = 8192  # markers in the whole file, walked here
PNG_MAX_CHUNKS = 256  # chunks other than image data (Pillow spends about 40 us on each)
PNG_MAX_DATA_CHUNKS = 16384  # IDAT/fdAT chunks (libpng writes 8 KB ones: 1,280 in 10 MB)
PNG_MAX_RAW_BYTES = 256 * 1024 * 1024  # samples to inflate and unfilter, about 1 s of CPU here (16-bit RGBA: 33 MP)
GIF_MAX_SUBBLOCKS = 4096  # extension sub-blocks before the first frame, read one by one in Python
GIF_MAX_COMMENT = 65536  # comment bytes before the first frame (Pillow joins them in quadratic time)
TIFF_MAX_ENTRIES = 256  # entries in an EXIF or MPF directory that Pillow parses on open
STRIP_PIXELS = 1 << 20  # conversion to RGB works on strips this large, never on a whole copy

ImageInput = str | os.PathLike | bytes | bytearray | Image.Image | np.ndarray

_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2}  # Pillow's storage; others 4


class InvalidImageError(ValueError):
    """The input is not an image Husky AI can read; the message says why, for a person."""


@dataclass
class Header:
    """What a file's structure says, read without decoding any pixels."""

    format: str
    width: int
    height: int
    kind: str  # for messages: "progressive JPEG", "RGBA PNG", ...
    decode_bytes: int  # decoded pixels plus decoder buffers, estimated
    mode: str = "RGB"  # Pillow's mode for the decoded image


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
    """Decode encoded image bytes into an RGB image, or raise InvalidImageError naming ``name``.

    Images whose shorter side is at least twice WORK_SIDE come back reduced by an integer factor
    (JPEG through libjpeg's scaled decoding), never below WORK_SIDE."""
    if len(data) == 0:
        raise InvalidImageError(f"{name}: the file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise InvalidImageError(f"{name}: file is {len(data) / 1e6:.1f} MB, the limit is {MAX_FILE_BYTES / 1e6:.0f} MB")
    header = inspect_header(data, name, max_pixels)  # refuses bombs from the header: nothing decoded yet
    _check_header(header, name, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # e.g. "malformed MPO": decoded as plain JPEG
            img = Image.open(io.BytesIO(data), formats=(header.format,))
            if img.size != (header.width, header.height):  # never seen; checked so the estimate holds
                raise InvalidImageError(f"{name}: the image header is inconsistent ({img.size[0]}x{img.size[1]} "
                                        f"and {header.width}x{header.height} pixels)")
            if header.format == "JPEG":
                img.draft(None, (WORK_SIDE, WORK_SIDE))  # libjpeg decodes at 1/2, 1/4 or 1/8 scale
            img.load()
            orientation = _orientation(img)
            img = _to_rgb_reduced(img, name)
            return _apply_orientation(img, orientation)
    except InvalidImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        if isinstance(err, UnidentifiedImageError):
            raise InvalidImageError(
                f"{name}: not a supported image (allowed: JPEG, PNG, WebP, BMP, GIF)"
            ) from None
        raise InvalidImageError(f"{name}: image is too large to decode safely "
                                f"(over the limit of {max_pixels / 1e6:.0f} megapixels)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error) as err:
        # Pillow reports truncation and corrupt streams through several exception types
        reason = "the file is truncated" if "truncated" in str(err) else f"the image data is corrupt ({err})"
        raise InvalidImageError(f"{name}: {reason}") from None


def _check_size(size: tuple[int, int], name: str, max_pixels: int = MAX_PIXELS) -> None:
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


def _check_header(header: Header, name: str, max_pixels: int) -> None:
    _check_size((header.width, header.height), name, max_pixels)
    needed = header.decode_bytes + _result_bytes(header.width, header.height)
    if needed > MEMORY_BUDGET:
        per_pixel = needed / (header.width * header.height)
        raise InvalidImageError(
            f"{name}: image is {header.width}x{header.height} pixels, too large to decode safely as a "
            f"{header.kind} (the limit for this kind is about {MEMORY_BUDGET / per_pixel / 1e6:.0f} megapixels)")


def reduction_factor(width: int, height: int) -> int:
    """The integer factor a decoded image is reduced by: its shorter side stays at least WORK_SIDE."""
    return max(1, min(width, height) // WORK_SIDE)


def _result_bytes(width: int, height: int) -> int:
    f = reduction_factor(width, height)
    return -(-width // f) * -(-height // f) * 4 + 3 * STRIP_PIXELS * 4  # the RGB result and strip copies


# ---------------------------------------------------------------------------------------------
# Header walks: each reads only structure, with a cap on every loop, in time linear in the file.


def inspect_header(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> Header:
    """Format, size and decoding cost from the file's structure alone; InvalidImageError for a file
    that is not an allowed format or whose structure would make decoding unbounded."""
    try:
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg_header(data, name, max_pixels)
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return _png_header(data, name, max_pixels)
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return _gif_header(data, name)
        if data[:2] == b"BM":
            return _bmp_header(data, name)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_header(data, name)
    except (struct.error, IndexError):
        raise InvalidImageError(f"{name}: the file is truncated") from None
    raise InvalidImageError(f"{name}: not a supported image (allowed: JPEG, PNG, WebP, BMP, GIF)")


_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # skips entropy-coded data, in C
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD9)}
_JPEG_SOF_ACCEPTED = {0xC0: "baseline JPEG", 0xC1: "JPEG", 0xC2: "progressive JPEG"}
_JPEG_SOF_OTHER = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_header(data: bytes, name: str, max_pixels: int) -> Header:
    pos, segments, junk, photoshop, scans, scan_blocks, exif_segments = 2, 0, 0, 0, 0, 0, 0
    frame = None  # (kind, width, height, [(id, h, v)])
    exif, mpf = b"", None
    while True:
        found = _JPEG_NEXT_MARKER.search(data, pos)  # in C: entropy data, fill bytes and junk alike
        if found is None:
            break  # truncated: Pillow says so
        if scans == 0:  # Pillow's header parser steps over these bytes one at a time
            junk += found.start() - pos
            if junk > JPEG_MAX_JUNK:
                raise InvalidImageError(f"{name}: the JPEG has more than {JPEG_MAX_JUNK} bytes of padding or junk "
                                        "between its header segments")
        marker_at = found.start() + 1
        marker = data[marker_at]
        if marker == 0xD9:  # end of image; an MPO's further pictures follow and are never decoded
            break
        segments += 1
        if segments > (JPEG_MAX_HEADER_SEGMENTS if scans == 0 else JPEG_MAX_SEGMENTS):
            raise InvalidImageError(f"{name}: the JPEG has too many segments "
                                    f"(more than {JPEG_MAX_HEADER_SEGMENTS} before its image data)")
        if marker in _JPEG_STANDALONE:
            pos = marker_at + 1
            continue
        (length,) = struct.unpack_from(">H", data, marker_at + 1)
        body = data[marker_at + 3:marker_at + 1 + length]
        if length < 2 or len(body) != length - 2:
            raise InvalidImageError(f"{name}: the file is truncated")
        pos = marker_at + 1 + length
        if marker in _JPEG_SOF_ACCEPTED:
            if frame is not None:
                raise InvalidImageError(f"{name}: the JPEG has more than one frame header")
            precision, height, width, ncomp = struct.unpack_from(">BHHB", body)
            comps = [(body[6 + 3 * i], body[7 + 3 * i] >> 4, body[7 + 3 * i] & 15) for i in range(ncomp)]
            if precision != 8 or ncomp not in (1, 3, 4) or height == 0 or \
                    any(not (1 <= h <= 4 and 1 <= v <= 4) for _, h, v in comps):
                raise InvalidImageError(f"{name}: unsupported JPEG ({precision}-bit, {ncomp} components)")
            _check_size((width, height), name, max_pixels)  # before its scans are counted: the clearer message
            frame = (_JPEG_SOF_ACCEPTED[marker], width, height, comps)
        elif marker in _JPEG_SOF_OTHER:
            raise InvalidImageError(f"{name}: unsupported JPEG coding (lossless, hierarchical or arithmetic)")
        elif marker == 0xDA:
            if frame is None:
                raise InvalidImageError(f"{name}: the JPEG has no frame header before its image data")
            scans += 1
            if scans > JPEG_MAX_SCANS:
                raise InvalidImageError(f"{name}: the JPEG has more than {JPEG_MAX_SCANS} scans "
                                        "(a progressive-JPEG decoding bomb)")
            ids = {body[1 + 2 * i] for i in range(body[0])}
            scan_blocks += sum(_jpeg_blocks(frame, c) for c in frame[3] if c[0] in ids)
            if scan_blocks > JPEG_MAX_SCAN_BLOCKS:
                raise InvalidImageError(f"{name}: the JPEG's scans would decode more than "
                                        f"{JPEG_MAX_SCAN_BLOCKS / 1e6:.0f} million blocks of 8x8 pixels "
                                        "(a progressive-JPEG decoding bomb)")
            found = _JPEG_NEXT_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
        elif scans == 0 and marker == 0xED:
            photoshop += body.count(b"8BIM")
            if photoshop > JPEG_MAX_PHOTOSHOP_BLOCKS:
                raise InvalidImageError(f"{name}: the JPEG has more than {JPEG_MAX_PHOTOSHOP_BLOCKS} "
                                        "Photoshop resource blocks")
        elif scans == 0 and marker == 0xE1 and body.startswith(b"Exif\0\0"):
            exif_segments += 1  # Pillow joins them one by one: quadratic time (152 took 0.4-1 s of CPU)
            if exif_segments > JPEG_MAX_EXIF_SEGMENTS:
                raise InvalidImageError(f"{name}: the JPEG has more than {JPEG_MAX_EXIF_SEGMENTS} EXIF segments")
            exif = exif + body[6:] if exif else body  # as Pillow joins them
        elif scans == 0 and marker == 0xE2 and body.startswith(b"MPF\0"):
            mpf = body[4:]
    if frame is None or scans == 0:
        raise InvalidImageError(f"{name}: the file is truncated" if frame else f"{name}: the JPEG has no image data")
    kind, width, height, comps = frame
    if exif:
        _check_tiff_directory(exif[6:], name, "EXIF")
    if mpf is not None:
        _check_tiff_directory(mpf, name, "MPF")
    multi_scan = scans > 1 or kind == "progressive JPEG"
    coefficients = sum(_jpeg_blocks(frame, c) for c in comps) * 128 if multi_scan else 0  # libjpeg keeps them all
    scale = 1
    for a in (8, 4, 2):  # what Pillow's draft picks for (WORK_SIDE, WORK_SIDE)
        if min(width // WORK_SIDE, height // WORK_SIDE) >= a:
            scale = a
            break
    mode = {1: "L", 3: "RGB", 4: "CMYK"}[len(comps)]
    decoded = -(-width // scale) * -(-height // scale) * _BYTES_PER_PIXEL.get(mode, 4)
    kind = f"{kind} ({len(comps)} components)" if multi_scan else kind
    return Header("JPEG", width, height, kind, coefficients + decoded, mode)


def _jpeg_blocks(frame: tuple, comp: tuple) -> int:
    _, width, height, comps = frame
    hmax, vmax = max(c[1] for c in comps), max(c[2] for c in comps)
    return _ceil(_ceil(width * comp[1], hmax), 8) * _ceil(_ceil(height * comp[2], vmax), 8)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _check_tiff_directory(blob: bytes, name: str, what: str) -> None:
    """Pillow reads every entry of this directory, and the data each points to, on open: a few
    thousand entries pointing at the same 64 KB cost seconds and hundreds of MB."""
    if len(blob) < 8 or blob[:4] not in (b"II*\0", b"MM\0*"):
        return  # Pillow gives up on it at once
    endian = "<" if blob[:2] == b"II" else ">"
    (offset,) = struct.unpack_from(endian + "L", blob, 4)
    if offset + 2 > len(blob):
        return
    (count,) = struct.unpack_from(endian + "H", blob, offset)
    if count > TIFF_MAX_ENTRIES:
        raise InvalidImageError(f"{name}: the {what} data has {count} entries, the limit is {TIFF_MAX_ENTRIES}")
    total = 0
    for i in range(count):
        if offset + 2 + 12 * i + 12 > len(blob):
            break
        _, typ, n = struct.unpack_from(endian + "HHL", blob, offset + 2 + 12 * i)
        size = n * {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}.get(typ, 0)
        total += size if size > 4 else 0
    if total > len(blob):
        raise InvalidImageError(f"{name}: the {what} data is malformed (its entries claim {total} bytes "
                                f"of {len(blob)})")


_PNG_MODES = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}
_PNG_DATA = (b"IDAT", b"fdAT")


def _png_header(data: bytes, name: str, max_pixels: int) -> Header:
    pos, chunks, data_chunks, ihdr = 8, 0, 0, None
    while pos + 8 <= len(data):
        length, tag = struct.unpack_from(">L4s", data, pos)
        if ihdr is None:
            if tag != b"IHDR" or length != 13:
                raise InvalidImageError(f"{name}: the PNG does not start with its header")
            ihdr = struct.unpack_from(">LLBBBBB", data, pos + 8)
        if tag in _PNG_DATA:
            data_chunks += 1
            if data_chunks > PNG_MAX_DATA_CHUNKS:
                raise InvalidImageError(f"{name}: the PNG has more than {PNG_MAX_DATA_CHUNKS} image data chunks")
        else:
            chunks += 1
            if chunks > PNG_MAX_CHUNKS:
                raise InvalidImageError(f"{name}: the PNG has more than {PNG_MAX_CHUNKS} chunks besides image data")
        if tag == b"IEND":
            break
        pos += 12 + length
    if ihdr is None:
        raise InvalidImageError(f"{name}: the file is truncated")
    width, height, depth, colour, _, _, interlace = ihdr
    mode = _PNG_MODES.get(colour, "RGB")
    if mode == "L" and depth == 1:
        mode = "1"
    elif mode == "L" and depth == 16:
        mode = "I;16"
    kind = f"{depth}-bit {mode if mode != 'I;16' else 'greyscale'} PNG" + (" (interlaced)" if interlace else "")
    _check_size((width, height), name, max_pixels)
    raw = width * height * {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 4) * depth // 8
    raw = raw * 2 if interlace else raw  # Adam7 took twice as long per sample (bench/decode.py)
    if raw > PNG_MAX_RAW_BYTES:
        per_pixel = raw / (width * height)
        raise InvalidImageError(f"{name}: image is {width}x{height} pixels, too large to decode safely as a {kind} "
                                f"(the limit for this kind is about {PNG_MAX_RAW_BYTES / per_pixel / 1e6:.0f} "
                                "megapixels)")
    return Header("PNG", width, height, kind, width * height * _BYTES_PER_PIXEL.get(mode, 4), mode)


def _gif_header(data: bytes, name: str) -> Header:
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    subblocks = comment = 0
    while pos < len(data):
        block = data[pos]
        if block == 0x21:  # extension: label, then sub-blocks
            label, pos = data[pos + 1], pos + 2
            subblocks += 1  # the extension itself counts: it may have no sub-blocks
            while True:
                if subblocks > GIF_MAX_SUBBLOCKS or comment > GIF_MAX_COMMENT:
                    raise InvalidImageError(f"{name}: the GIF has too much extension data before its first frame")
                if pos >= len(data) or not data[pos]:
                    break
                subblocks += 1
                comment += data[pos] if label == 0xFE else 0
                pos += 1 + data[pos]
            pos += 1
        elif block == 0x2C:  # the first frame: it may extend the canvas, as Pillow does
            x, y, w, h = struct.unpack_from("<HHHH", data, pos + 1)
            width, height = max(width, x + w), max(height, y + h)
            return Header("GIF", width, height, "GIF", width * height, "P")
        else:
            break
    raise InvalidImageError(f"{name}: the GIF has no image")


_BMP_COMPRESSION = {1: "RLE8", 2: "RLE4", 4: "JPEG", 5: "PNG"}


def _bmp_header(data: bytes, name: str) -> Header:
    (header_size,) = struct.unpack_from("<L", data, 14)
    if header_size == 12:
        width, height, _, bits = struct.unpack_from("<HHHH", data, 18)
        compression = 0
    else:
        width, height, _, bits, compression = struct.unpack_from("<llHHL", data, 18)
    if compression in _BMP_COMPRESSION:
        # Pillow decodes RLE row by row in Python: 1 KB of RLE took 17 s for 4,000,000x16 pixels
        raise InvalidImageError(f"{name}: {_BMP_COMPRESSION[compression]}-compressed BMP is not accepted "
                                "(save it as PNG or as uncompressed BMP)")
    width, height = abs(width), abs(height)
    mode = "P" if bits <= 8 else "RGB"
    return Header("BMP", width, height, f"{bits}-bit BMP", width * height * _BYTES_PER_PIXEL[mode]
                  if mode == "P" else width * height * 4, mode)


def _webp_header(data: bytes, name: str) -> Header:
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        kind = "animated WebP" if data[20] & 0x02 else "WebP"
    elif chunk == b"VP8 ":
        width, height = (v & 0x3FFF for v in struct.unpack_from("<HH", data, 26))
        kind = "WebP"
    elif chunk == b"VP8L":
        (bits,) = struct.unpack_from("<L", data, 21)
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        kind = "lossless WebP"
    else:
        raise InvalidImageError(f"{name}: not a supported image (unknown WebP chunk {chunk!r})")
    # libwebp's animation decoder keeps two RGBA canvases besides Pillow's copy
    return Header("WEBP", width, height, kind, width * height * 12, "RGBA")


# ---------------------------------------------------------------------------------------------
# Orientation, read from EXIF's first directory by hand: Pillow's getexif() reads every entry.

_TRANSPOSE = {2: [Image.Transpose.FLIP_LEFT_RIGHT], 3: [Image.Transpose.ROTATE_180],
              4: [Image.Transpose.FLIP_TOP_BOTTOM], 5: [Image.Transpose.TRANSPOSE],
              6: [Image.Transpose.ROTATE_270], 7: [Image.Transpose.TRANSVERSE], 8: [Image.Transpose.ROTATE_90]}
_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(?:="|>)([0-9])')


def _orientation(img: Image.Image) -> int:
    """EXIF orientation (1-8) of a Pillow image, from its EXIF or else its XMP, as Pillow reads it."""
    exif = img.info.get("exif")
    if isinstance(exif, bytes):
        value = exif_orientation(exif)
        if value:
            return value
    xmp = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8", "replace")
    if isinstance(xmp, bytes):
        found = _XMP_ORIENTATION.search(xmp)
        if found:
            return int(found.group(1))
    return 1


def exif_orientation(exif: bytes) -> int:
    """The Orientation tag (0x0112) of an EXIF blob, 0 if absent or unreadable; bounded work."""
    blob = exif[6:] if exif.startswith(b"Exif\0\0") else exif
    if len(blob) < 8 or blob[:4] not in (b"II*\0", b"MM\0*"):
        return 0
    endian = "<" if blob[:2] == b"II" else ">"
    (offset,) = struct.unpack_from(endian + "L", blob, 4)
    if offset + 2 > len(blob):
        return 0
    (count,) = struct.unpack_from(endian + "H", blob, offset)
    entries = blob[offset + 2:offset + 2 + 12 * count]
    for i in range(0, len(entries) - 11, 12):
        tag, typ = struct.unpack_from(endian + "HH", entries, i)
        if tag == 0x0112 and typ == 3:
            (value,) = struct.unpack_from(endian + "H", entries, i + 8)
            return value if 1 <= value <= 8 else 0
    return 0


def _apply_orientation(img: Image.Image, orientation: int) -> Image.Image:
    for method in _TRANSPOSE.get(orientation, []):
        img = img.transpose(method)
    return img


# ---------------------------------------------------------------------------------------------
# Conversion to 8-bit RGB


def _to_rgb_reduced(img: Image.Image, name: str) -> Image.Image:
    """8-bit RGB, reduced by reduction_factor(); strip by strip, so the only full-size copy in memory
    is the decoded image itself."""
    w, h = img.size
    f = reduction_factor(w, h)
    if f == 1 and w * h <= STRIP_PIXELS:
        return to_rgb(img, name)
    out = Image.new("RGB", (-(-w // f), -(-h // f)))
    rows = f * max(1, STRIP_PIXELS // (w * f))
    for top in range(0, h, rows):
        strip = img.crop((0, top, w, min(h, top + rows)))
        if f > 1:  # reduce first: compositing on white is linear, so it commutes with averaging
            strip = _reducible(strip, name).reduce(f)
        out.paste(to_rgb(strip, name), (0, top // f))
    return out


def _reducible(img: Image.Image, name: str) -> Image.Image:
    """The image in a mode Image.reduce averages correctly (palette indices must not be averaged)."""
    if img.mode in ("L", "LA", "RGB", "RGBA"):
        return img
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info or img.palette.mode == "RGBA" else "RGB")
    if img.mode == "1":
        return img.convert("L")
    if img.mode in ("PA", "La", "RGBa"):
        return img.convert("RGBA")
    return to_rgb(img, name)


def to_rgb(img: Image.Image, name: str = "image") -> Image.Image:
    """8-bit RGB from any Pillow mode; transparency is composited on white; 16-bit keeps its top byte."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16L", "I;16B"):
        # the high byte of each sample, unpacked by Pillow (no float copies): v >> 8
        rawmode = "L;16B" if img.mode == "I;16B" else "L;16"
        return Image.frombytes("L", img.size, img.tobytes(), "raw", rawmode).convert("RGB")
    if img.mode in ("I", "F"):
        # 32-bit samples from Python callers: 0-255, or 0-65535 when larger values occur
        low, high = img.getextrema()
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


def _from_array(arr: np.ndarray, name: str) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InvalidImageError(f"{name}: array of shape {arr.shape} is not an HxW, HxWx3 or HxWx4 image")
    _check_size((arr.shape[1], arr.shape[0]), name, MAX_PIXELS)
    if arr.dtype == np.uint8:
        pass
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise InvalidImageError(f"{name}: float arrays must hold values in [0, 1]")
        arr = (arr * 255.0 + 0.5).astype(np.uint8)
    else:
        raise InvalidImageError(f"{name}: array dtype {arr.dtype} is not uint8 or float in [0, 1]")
    return _to_rgb_reduced(Image.fromarray(np.ascontiguousarray(arr)), name)


def describe(data: bytes | None) -> dict:
    """Format and pixel size from an image's header, without decoding it (for logs)."""
    info = {"image_format": None, "width": None, "height": None}
    if data:
        try:
            header = inspect_header(data)
            info.update(image_format=header.format, width=header.width, height=header.height)
        except InvalidImageError:
            info.update(_declared_size(data))  # a refused file is still described, as far as it can be
        except Exception:  # noqa: BLE001 - anything unreadable is simply described as unknown
            pass
    return info


_JPEG_SOF = re.compile(rb"\xff[\xc0-\xc3\xc5-\xc7\xc9-\xcb\xcd-\xcf]..(.)(..)(..)", re.DOTALL)


def _declared_size(data: bytes) -> dict:
    """Format and size as the fixed part of the header declares them (for logs of refused files)."""
    try:
        if data[:3] == b"\xff\xd8\xff":
            found = _JPEG_SOF.search(data)
            height, width = (int.from_bytes(found.group(i), "big") for i in (2, 3)) if found else (None, None)
            return dict(image_format="JPEG", width=width, height=height)
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return dict(image_format="PNG", width=struct.unpack_from(">L", data, 16)[0],
                        height=struct.unpack_from(">L", data, 20)[0])
        if data[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack_from("<HH", data, 6)
            return dict(image_format="GIF", width=width, height=height)
        if data[:2] == b"BM":
            if struct.unpack_from("<L", data, 14)[0] == 12:
                width, height = struct.unpack_from("<HH", data, 18)
            else:
                width, height = struct.unpack_from("<ll", data, 18)
            return dict(image_format="BMP", width=abs(width), height=abs(height))
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            header = _webp_header(data, "image")
            return dict(image_format="WEBP", width=header.width, height=header.height)
    except (struct.error, IndexError, InvalidImageError):
        pass
    return {}


def load_image(source: ImageInput, name: str | None = None) -> Image.Image:
    """Any supported input (path, bytes, PIL image, numpy array) as a checked 8-bit RGB image,
    reduced by an integer factor when its shorter side is at least 2 * WORK_SIDE."""
    if isinstance(source, (str, os.PathLike)):
        label = name or Path(source).name
        return decode_bytes(read_limited(source), label)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(source), name or "image")
    if isinstance(source, Image.Image):
        label = name or "image"
        _check_size(source.size, label, MAX_PIXELS)
        orientation = _orientation(source)
        return _apply_orientation(_to_rgb_reduced(source, label), orientation)
    if isinstance(source, np.ndarray):
        return _from_array(source, name or "array")
    raise InvalidImageError(
        f"cannot read an image from {type(source).__name__}; pass a path, bytes, a PIL image or a numpy array"
    )
