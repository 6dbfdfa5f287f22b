"""EXIF and MPF directories, read by hand with bounded work: the orientation tag, and a check of the
directories Pillow itself parses on open (its getexif() reads every entry and the data each points to,
which a hostile file makes large)."""

from __future__ import annotations

import re
import struct

from PIL import Image

from huskyai.errors import InvalidImageError

TIFF_MAX_ENTRIES = 256  # entries in an EXIF or MPF directory that Pillow parses on open
# Bytes per value of each TIFF type Pillow loads (16 is LONG8: Pillow reads it in EXIF too; 17-18 likewise 8)
_TIFF_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
                    16: 8, 17: 8, 18: 8}
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(?:="|>)([0-9])')


def _first_directory(blob: bytes) -> tuple[str, int, int] | None:
    """(byte order, offset of the first entry, number of entries) of a TIFF blob's first directory;
    None when there is none (Pillow gives up on such a blob at once)."""
    if len(blob) < 8 or blob[:4] not in (b"II*\0", b"MM\0*"):
        return None
    endian = "<" if blob[:2] == b"II" else ">"
    (offset,) = struct.unpack_from(endian + "L", blob, 4)
    if offset + 2 > len(blob):
        return None
    (count,) = struct.unpack_from(endian + "H", blob, offset)
    return endian, offset + 2, count


def check_tiff_directory(blob: bytes, name: str, what: str) -> None:
    """Pillow reads every entry of this directory, and the data each points to, on open: a few
    thousand entries pointing at the same 64 KB cost seconds and hundreds of MB."""
    found = _first_directory(blob)
    if found is None:
        return
    endian, start, count = found
    if count > TIFF_MAX_ENTRIES:
        raise InvalidImageError(f"{name}: the {what} data has {count} entries, the limit is {TIFF_MAX_ENTRIES}")
    total = 0
    for at in range(start, min(start + 12 * count, len(blob) - 11), 12):
        _, typ, n = struct.unpack_from(endian + "HHL", blob, at)
        size = n * _TIFF_TYPE_BYTES.get(typ, 0)
        total += size if size > 4 else 0
    if total > len(blob):
        raise InvalidImageError(f"{name}: the {what} data is malformed (its entries claim {total} bytes "
                                f"of {len(blob)})")


def exif_orientation(exif: bytes) -> int:
    """The Orientation tag (0x0112) of an EXIF blob, 0 if absent or unreadable; bounded work."""
    blob = exif[6:] if exif.startswith(b"Exif\0\0") else exif
    found = _first_directory(blob)
    if found is None:
        return 0
    endian, start, count = found
    for at in range(start, min(start + 12 * count, len(blob) - 11), 12):
        tag, typ = struct.unpack_from(endian + "HH", blob, at)
        if tag == 0x0112 and typ == 3:
            (value,) = struct.unpack_from(endian + "H", blob, at + 8)
            return value if 1 <= value <= 8 else 0
    return 0


def orientation(img: Image.Image) -> int:
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


def apply_orientation(img: Image.Image, value: int) -> Image.Image:
    """The image as it is meant to be seen, for an EXIF orientation ``value`` (1-8)."""
    method = _TRANSPOSE.get(value)
    return img.transpose(method) if method is not None else img
