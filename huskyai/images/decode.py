"""Decoding untrusted images: the one door every photo passes through, in training and serving.

Formats are recognised by content, never by file name. Before Pillow sees a byte, a bounded walk of
the file's own structure (huskyai.images.headers, .jpeg) reads its size and everything that would make
decoding slow or large, estimates the memory decoding needs and refuses what is over the limits
(huskyai.images.limits), with a message for a person. Large JPEGs are then decoded reduced
(``draft``, shorter side at least JPEG_DRAFT_SIDE), other formats are reduced by an integer box
filter strip by strip (.convert), EXIF orientation is applied on the small result (.exif)
and every mode ends as 8-bit RGB. Photo files are read here too, by the one reader that never follows a
link (:func:`read_limited`).

What this bounds (measured by ``bench/decode.py``): any file of MAX_FILE_BYTES or less is decoded or
refused within about 2 s and 400 MB of extra memory on a 2-core machine.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from huskyai.boundedread import read_at_most
from huskyai.errors import InvalidImageError, NotFollowedError
from huskyai.images.convert import from_array, to_rgb, to_rgb_reduced
from huskyai.images.exif import apply_orientation, exif_orientation, orientation
from huskyai.images.headers import declared_size, inspect_header
from huskyai.images.limits import (
    ALLOWED_FORMATS,
    JPEG_DRAFT_SIDE,
    MAX_ASPECT,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    MAX_SIDE,
    MEMORY_BUDGET,
    MIN_SIDE,
    UNSUPPORTED,
    WORK_SIDE,
    Header,
    check_budget,
    check_size,
    reduction_factor,
)

__all__ = ["ALLOWED_FORMATS", "MAX_ASPECT", "MAX_FILE_BYTES", "MAX_PIXELS", "MAX_SIDE", "MEMORY_BUDGET", "MIN_SIDE",
           "WORK_SIDE", "Header", "ImageInput", "InvalidImageError", "NotFollowedError", "decode_bytes", "describe",
           "exif_orientation", "file_identity", "inspect_header", "load_image", "read_limited", "reduction_factor",
           "same_file", "to_rgb"]

ImageInput = str | os.PathLike | bytes | bytearray | Image.Image | np.ndarray


def _over_the_limit(name: str, size: int, max_bytes: int) -> InvalidImageError:
    return InvalidImageError(f"{name}: file is {size / 1e6:.1f} MB, the limit is {max_bytes / 1e6:.0f} MB")




def file_identity(info: os.stat_result) -> str:
    """Which file ``info`` describes: "device:inode", one string that travels anywhere (to a process pool, a Ray
    actor). A device left out (":inode") matches any device: another machine numbers a shared file system's
    devices its own way."""
    return f"{info.st_dev}:{info.st_ino}"


def same_file(info: os.stat_result, identity: str) -> bool:
    device, _, inode = identity.partition(":")
    return inode == str(info.st_ino) and (not device or device == str(info.st_dev))


def read_limited(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES, identity: str | None = None) -> bytes:
    """A photo file's bytes: the regular file at ``path``, never through a symbolic link, refused over
    ``max_bytes`` before it is read; with ``identity`` (:func:`file_identity` from a folder scan) only if it is
    still the file the scan found. InvalidImageError says why not (NotFollowedError for a link).

    The one reader of photo files (predict, training, evaluation, scoring), so a folder from someone else
    cannot point a "photo" at a secret, such as the signing key, and have its bytes hashed into a log or a
    results file. O_NOFOLLOW refuses a link in the last component; the identity check refuses a file reached
    through a folder swapped for a link since the scan; O_NONBLOCK keeps a FIFO in a photo's place from
    blocking the open (it is then refused as not a regular file). Never reads more than ``max_bytes`` + 1:
    a file may grow after its size was checked (huskyai.boundedread)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EMLINK):  # Linux, macOS: ELOOP; FreeBSD: EMLINK
            raise NotFollowedError(f"{path.name}: a symbolic link, not followed (photos are never read through "
                                   "links; name the file it points to)") from None
        raise InvalidImageError(f"{path}: cannot read file ({err.strerror or err})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InvalidImageError(f"{path.name}: not a regular file")
        if identity is not None and not same_file(info, identity):
            raise InvalidImageError(f"{path.name}: replaced since the folder was scanned; not read")
        if info.st_size > max_bytes:
            raise _over_the_limit(path.name, info.st_size, max_bytes)
        return read_at_most(
            f, max_bytes, lambda err: InvalidImageError(f"{path}: cannot read file ({err.strerror or err})"),
            lambda: InvalidImageError(f"{path.name}: file is over the limit of {max_bytes / 1e6:.0f} MB"))


def decode_bytes(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode encoded image bytes into an RGB image, or raise InvalidImageError naming ``name``.

    Images whose shorter side is at least twice WORK_SIDE come back reduced by an integer factor, never
    below WORK_SIDE; JPEGs already from twice JPEG_DRAFT_SIDE, through libjpeg's scaled decoding."""
    if len(data) == 0:
        raise InvalidImageError(f"{name}: the file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise _over_the_limit(name, len(data), MAX_FILE_BYTES)
    header = inspect_header(data, name, max_pixels)  # refuses bombs from the header: nothing decoded yet
    check_budget(header, name, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # e.g. "malformed MPO": decoded as plain JPEG
            return _decode_checked(data, header, name)
    except InvalidImageError:
        raise
    except UnidentifiedImageError:
        raise InvalidImageError(f"{name}: {UNSUPPORTED}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidImageError(f"{name}: image is too large to decode safely "
                                f"(over the limit of {max_pixels / 1e6:.0f} megapixels)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error) as err:
        # Pillow reports truncation and corrupt streams through several exception types
        reason = "the file is truncated" if "truncated" in str(err) else f"the image data is corrupt ({err})"
        raise InvalidImageError(f"{name}: {reason}") from None


def _decode_checked(data: bytes, header: Header, name: str) -> Image.Image:
    """Pillow's decode of a file whose header passed the checks, reduced, oriented, 8-bit RGB."""
    img = Image.open(io.BytesIO(data), formats=(header.format,))
    if img.size != (header.width, header.height):  # never seen; checked so the estimate holds
        raise InvalidImageError(f"{name}: the image header is inconsistent ({img.size[0]}x{img.size[1]} "
                                f"and {header.width}x{header.height} pixels)")
    if header.format == "JPEG":
        img.draft(None, (JPEG_DRAFT_SIDE, JPEG_DRAFT_SIDE))  # libjpeg decodes at 1/2, 1/4 or 1/8 scale
    img.load()
    turn = orientation(img)
    return apply_orientation(to_rgb_reduced(img, name), turn)


def describe(data: bytes | None) -> dict:
    """Format and pixel size from an image's header, without decoding it (for logs)."""
    info = {"image_format": None, "width": None, "height": None}
    if data:
        try:
            header = inspect_header(data)
            info.update(image_format=header.format, width=header.width, height=header.height)
        except InvalidImageError:
            info.update(declared_size(data))  # a refused file is still described, as far as it can be
        except Exception:  # noqa: BLE001 - anything unreadable is simply described as unknown
            pass
    return info


def load_image(source: ImageInput, name: str | None = None) -> Image.Image:
    """Any supported input (path, bytes, PIL image, numpy array) as a checked 8-bit RGB image,
    reduced by an integer factor when its shorter side is at least 2 * WORK_SIDE (2 * JPEG_DRAFT_SIDE for
    JPEG files)."""
    if isinstance(source, (str, os.PathLike)):
        label = name or Path(source).name
        return decode_bytes(read_limited(source), label)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(source), name or "image")
    if isinstance(source, Image.Image):
        label = name or "image"
        check_size(source.size, label, MAX_PIXELS)
        return apply_orientation(to_rgb_reduced(source, label), orientation(source))
    if isinstance(source, np.ndarray):
        return from_array(source, name or "array")
    raise InvalidImageError(
        f"cannot read an image from {type(source).__name__}; pass a path, bytes, a PIL image or a numpy array"
    )
