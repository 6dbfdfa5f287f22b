"""A bounded walk over a JPEG's markers: size, coding and decoding cost, before Pillow sees a byte.

Pillow parses the header segments (everything before the first scan) in Python, one byte or one table
at a time; libjpeg then walks every 8x8 block once per scan. Each such loop is capped here from the
file's structure, and the walk itself takes time linear in the file (entropy data is skipped in C).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import NoReturn

from huskyai.errors import InvalidImageError
from huskyai.images.exif import check_tiff_directory
from huskyai.images.limits import BYTES_PER_PIXEL, Header, check_size, jpeg_draft_scale

# Work Pillow does in Python per structure element, bounded here (each measured at 2-50 us a piece):
JPEG_MAX_HEADER_SEGMENTS = 512  # markers before the first scan (a phone photo has about 15)
JPEG_MAX_JUNK = 1024  # bytes of fill or junk between those markers, skipped one by one
JPEG_MAX_PHOTOSHOP_BLOCKS = 1024  # 8BIM resource blocks, parsed in Python on open
JPEG_MAX_EXIF_SEGMENTS = 8  # the standard has one; Pillow concatenates each further one to the last
# Quantization tables (65 or 129 bytes each) Pillow unpacks one by one: a 10 MB file of them took 0.84 s
# of CPU, four times a 12 MP photo. A photo has 2-4 (there are only 4 slots).
JPEG_MAX_QUANT_BYTES = 64 * 65  # at most 64 tables
JPEG_MAX_SCANS = 64  # libjpeg's progressive script has 10; each scan walks every block it covers
JPEG_MAX_SCAN_BLOCKS = 16_000_000  # 8x8 blocks summed over all scans, ~30 ns each (a 48 MP progressive photo: ~6M)
JPEG_MAX_SEGMENTS = 8192  # markers in the whole file, walked here

_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # skips entropy-coded data, in C
_STANDALONE = {0x01, *range(0xD0, 0xD9)}
_SOF_ACCEPTED = {0xC0: "baseline JPEG", 0xC1: "JPEG", 0xC2: "progressive JPEG"}
_SOF_OTHER = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass
class _Frame:
    """The frame header (SOF): the picture's size and its components' sampling factors."""

    kind: str
    width: int
    height: int
    components: list[tuple[int, int, int]] = field(default_factory=list)  # (id, horizontal, vertical)

    def blocks(self, comp: tuple[int, int, int]) -> int:
        """8x8 blocks of one component, as libjpeg decodes them."""
        hmax, vmax = max(c[1] for c in self.components), max(c[2] for c in self.components)
        return _ceil(_ceil(self.width * comp[1], hmax), 8) * _ceil(_ceil(self.height * comp[2], vmax), 8)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def jpeg_header(data: bytes, name: str, max_pixels: int) -> Header:
    """Size, coding and decoding cost of a JPEG (``data`` starts with its SOI marker)."""
    return _JpegWalk(data, name, max_pixels).run()


class _JpegWalk:
    """One walk over a JPEG's markers, with the counts each cap needs."""

    def __init__(self, data: bytes, name: str, max_pixels: int) -> None:
        self.data, self.name, self.max_pixels = data, name, max_pixels
        self.pos = 2  # after SOI
        self.segments = self.junk = self.photoshop = self.exif_segments = self.quant_bytes = 0
        self.scans = self.scan_blocks = self.first_scan_components = 0
        self.frame: _Frame | None = None
        self.exif, self.mpf = b"", None

    def refuse(self, reason: str) -> NoReturn:
        raise InvalidImageError(f"{self.name}: {reason}")

    def run(self) -> Header:
        while self.next_segment():
            pass
        return self.header()

    def next_segment(self) -> bool:
        """Reads the next marker and its segment; False at the end of the image or of the data."""
        found = _NEXT_MARKER.search(self.data, self.pos)  # in C: entropy data, fill bytes and junk alike
        if found is None:
            return False  # truncated: Pillow says so
        if self.scans == 0:  # Pillow's header parser steps over these bytes one at a time
            self.junk += found.start() - self.pos
            if self.junk > JPEG_MAX_JUNK:
                self.refuse(f"the JPEG has more than {JPEG_MAX_JUNK} bytes of padding or junk between its header "
                            "segments")
        marker_at = found.start() + 1
        marker = self.data[marker_at]
        if marker == 0xD9:  # end of image; an MPO's further pictures follow and are never decoded
            return False
        self.count_segment()
        if marker in _STANDALONE:
            self.pos = marker_at + 1
            return True
        (length,) = struct.unpack_from(">H", self.data, marker_at + 1)
        body = self.data[marker_at + 3:marker_at + 1 + length]
        if length < 2 or len(body) != length - 2:
            self.refuse("the file is truncated")
        self.pos = marker_at + 1 + length
        self.segment(marker, body)
        return True

    def count_segment(self) -> None:
        self.segments += 1
        if self.scans == 0 and self.segments > JPEG_MAX_HEADER_SEGMENTS:
            self.refuse(f"the JPEG has too many segments (more than {JPEG_MAX_HEADER_SEGMENTS} before its image data)")
        if self.segments > JPEG_MAX_SEGMENTS:
            self.refuse(f"the JPEG has too many segments (more than {JPEG_MAX_SEGMENTS})")

    def segment(self, marker: int, body: bytes) -> None:
        if marker in _SOF_ACCEPTED:
            self.frame_header(_SOF_ACCEPTED[marker], body)
        elif marker in _SOF_OTHER:
            self.refuse("unsupported JPEG coding (lossless, hierarchical or arithmetic)")
        elif marker == 0xDA:
            self.scan(body)
        elif self.scans == 0:
            self.header_segment(marker, body)

    def frame_header(self, kind: str, body: bytes) -> None:
        if self.frame is not None:
            self.refuse("the JPEG has more than one frame header")
        precision, height, width, ncomp = struct.unpack_from(">BHHB", body)
        comps = [(body[6 + 3 * i], body[7 + 3 * i] >> 4, body[7 + 3 * i] & 15) for i in range(ncomp)]
        if precision != 8 or ncomp not in (1, 3, 4) or height == 0 or \
                any(not (1 <= h <= 4 and 1 <= v <= 4) for _, h, v in comps):
            self.refuse(f"unsupported JPEG ({precision}-bit, {ncomp} components)")
        check_size((width, height), self.name, self.max_pixels)  # before its scans are counted: the clearer message
        self.frame = _Frame(kind, width, height, comps)

    def scan(self, body: bytes) -> None:
        if self.frame is None:
            self.refuse("the JPEG has no frame header before its image data")
        self.scans += 1
        if self.scans > JPEG_MAX_SCANS:
            self.refuse(f"the JPEG has more than {JPEG_MAX_SCANS} scans (a progressive-JPEG decoding bomb)")
        ids = {body[1 + 2 * i] for i in range(body[0])}
        if self.scans == 1:
            self.first_scan_components = body[0]
        self.scan_blocks += sum(self.frame.blocks(c) for c in self.frame.components if c[0] in ids)
        if self.scan_blocks > JPEG_MAX_SCAN_BLOCKS:
            self.refuse(f"the JPEG's scans would decode more than {JPEG_MAX_SCAN_BLOCKS / 1e6:.0f} million blocks "
                        "of 8x8 pixels (a progressive-JPEG decoding bomb)")
        found = _NEXT_MARKER.search(self.data, self.pos)  # skip the entropy-coded data
        self.pos = len(self.data) if found is None else found.start()

    def header_segment(self, marker: int, body: bytes) -> None:
        """The segments Pillow parses in Python before the first scan."""
        if marker == 0xED:
            self.photoshop += body.count(b"8BIM")
            if self.photoshop > JPEG_MAX_PHOTOSHOP_BLOCKS:
                self.refuse(f"the JPEG has more than {JPEG_MAX_PHOTOSHOP_BLOCKS} Photoshop resource blocks")
        elif marker == 0xE1 and body.startswith(b"Exif\0\0"):
            self.exif_segments += 1  # Pillow joins them one by one: quadratic time (152 took 0.4-1 s of CPU)
            if self.exif_segments > JPEG_MAX_EXIF_SEGMENTS:
                self.refuse(f"the JPEG has more than {JPEG_MAX_EXIF_SEGMENTS} EXIF segments")
            self.exif = self.exif + body[6:] if self.exif else body  # as Pillow joins them
        elif marker == 0xE2 and body.startswith(b"MPF\0"):
            self.mpf = body[4:]
        elif marker == 0xDB:
            self.quant_bytes += len(body)
            if self.quant_bytes > JPEG_MAX_QUANT_BYTES:
                self.refuse(f"the JPEG has more than {JPEG_MAX_QUANT_BYTES // 65} quantization tables")

    def header(self) -> Header:
        """The Header once every segment is read; the memory estimate follows libjpeg's."""
        frame = self.frame
        if frame is None or self.scans == 0:
            self.refuse("the file is truncated" if frame else "the JPEG has no image data")
        if self.exif:
            check_tiff_directory(self.exif[6:], self.name, "EXIF")
        if self.mpf is not None:
            check_tiff_directory(self.mpf, self.name, "MPF")
        # libjpeg keeps every coefficient (128 bytes a block) when the image comes in several scans: a
        # progressive file, or a first scan that leaves out a component
        comps = frame.components
        multi_scan = self.scans > 1 or frame.kind == "progressive JPEG" or self.first_scan_components < len(comps)
        coefficients = sum(frame.blocks(c) for c in comps) * 128 if multi_scan else 0
        scale = jpeg_draft_scale(frame.width, frame.height)
        mode = {1: "L", 3: "RGB", 4: "CMYK"}[len(comps)]
        decoded = _ceil(frame.width, scale) * _ceil(frame.height, scale) * BYTES_PER_PIXEL.get(mode, 4)
        kind = f"{frame.kind} ({len(comps)} components)" if multi_scan else frame.kind
        return Header("JPEG", frame.width, frame.height, kind, coefficients + decoded, mode)
