"""Which format a file is, by content, and what its header says: size, mode and decoding cost.

Each walk reads only structure, with a cap on every loop, in time linear in the file, and refuses a
file whose structure would make Pillow's decoding slow or large. JPEG's walk is in image_jpeg.
"""

from __future__ import annotations

import re
import struct

from huskyai.errors import InvalidImageError
from huskyai.images.jpeg import jpeg_header
from huskyai.images.limits import BYTES_PER_PIXEL, MAX_PIXELS, UNSUPPORTED, Header, check_size, too_large

PNG_MAX_CHUNKS = 256  # chunks other than image data (Pillow spends about 40 us on each)
PNG_MAX_DATA_CHUNKS = 16384  # IDAT/fdAT chunks (libpng writes 8 KB ones: 1,280 in 10 MB)
PNG_MAX_RAW_BYTES = 256 * 1024 * 1024  # samples to inflate and unfilter, about 1 s of CPU here (16-bit RGBA: 33 MP)
GIF_MAX_SUBBLOCKS = 4096  # extension sub-blocks before the first frame, read one by one in Python
GIF_MAX_COMMENT = 65536  # comment bytes before the first frame (Pillow joins them in quadratic time)

_PNG_MODES = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_DATA = (b"IDAT", b"fdAT")
_BMP_COMPRESSION = {1: "RLE8", 2: "RLE4", 4: "JPEG", 5: "PNG"}


def sniff(data: bytes) -> str | None:
    """The format named by the file's first bytes, None for anything else."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def inspect_header(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> Header:
    """Format, size and decoding cost from the file's structure alone; InvalidImageError for a file
    that is not an allowed format or whose structure would make decoding unbounded."""
    fmt = sniff(data)
    try:
        if fmt == "JPEG":
            return jpeg_header(data, name, max_pixels)
        if fmt == "PNG":
            return _png_header(data, name, max_pixels)
        if fmt == "GIF":
            return _gif_header(data, name)
        if fmt == "BMP":
            return _bmp_header(data, name)
        if fmt == "WEBP":
            return _webp_header(data, name)
    except (struct.error, IndexError):
        raise InvalidImageError(f"{name}: the file is truncated") from None
    raise InvalidImageError(f"{name}: {UNSUPPORTED}")


def _png_header(data: bytes, name: str, max_pixels: int) -> Header:
    ihdr = _png_walk(data, name)
    width, height, depth, colour, _, _, interlace = ihdr
    mode = _PNG_MODES.get(colour, "RGB")
    if mode == "L" and depth == 1:
        mode = "1"
    elif mode == "L" and depth == 16:
        mode = "I;16"
    kind = f"{depth}-bit {mode if mode != 'I;16' else 'greyscale'} PNG" + (" (interlaced)" if interlace else "")
    check_size((width, height), name, max_pixels)
    raw = width * height * _PNG_CHANNELS.get(colour, 4) * depth // 8
    raw = raw * 2 if interlace else raw  # Adam7 took twice as long per sample (bench/decode.py)
    if raw > PNG_MAX_RAW_BYTES:
        raise too_large(name, width, height, kind, raw, PNG_MAX_RAW_BYTES)
    return Header("PNG", width, height, kind, width * height * BYTES_PER_PIXEL.get(mode, 4), mode)


def _png_walk(data: bytes, name: str) -> tuple[int, ...]:
    """The IHDR fields, after counting every chunk up to IEND (Pillow reads them all, in Python)."""
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
    return ihdr


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


def _bmp_size(data: bytes) -> tuple[int, int, int, int]:
    """Width, height (both positive), bits per pixel and compression from a BMP's info header."""
    (header_size,) = struct.unpack_from("<L", data, 14)
    if header_size == 12:  # OS/2: unsigned 16-bit sides, never compressed
        width, height, _, bits = struct.unpack_from("<HHHH", data, 18)
        return width, height, bits, 0
    width, height, _, bits, compression = struct.unpack_from("<llHHL", data, 18)
    return abs(width), abs(height), bits, compression


def _bmp_header(data: bytes, name: str) -> Header:
    width, height, bits, compression = _bmp_size(data)
    if compression in _BMP_COMPRESSION:
        # Pillow decodes RLE row by row in Python: 1 KB of RLE took 17 s for 4,000,000x16 pixels
        raise InvalidImageError(f"{name}: {_BMP_COMPRESSION[compression]}-compressed BMP is not accepted "
                                "(save it as PNG or as uncompressed BMP)")
    mode = "P" if bits <= 8 else "RGB"
    return Header("BMP", width, height, f"{bits}-bit BMP", width * height * BYTES_PER_PIXEL.get(mode, 4), mode)


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


_JPEG_SOF = re.compile(rb"\xff[\xc0-\xc3\xc5-\xc7\xc9-\xcb\xcd-\xcf]..(.)(..)(..)", re.DOTALL)


def declared_size(data: bytes) -> dict:
    """Format and size as the fixed part of the header declares them (for logs of refused files)."""
    fmt, width, height = sniff(data), None, None
    try:
        if fmt == "JPEG":
            found = _JPEG_SOF.search(data)
            if found:
                height, width = (int.from_bytes(found.group(i), "big") for i in (2, 3))
        elif fmt == "PNG":
            width, height = struct.unpack_from(">LL", data, 16)
        elif fmt == "GIF":
            width, height = struct.unpack_from("<HH", data, 6)
        elif fmt == "BMP":
            width, height, _, _ = _bmp_size(data)
        elif fmt == "WEBP":
            header = _webp_header(data, "image")
            width, height = header.width, header.height
    except (struct.error, IndexError, InvalidImageError):
        return {}
    return dict(image_format=fmt, width=width, height=height) if fmt else {}
