"""Malformed and mutated images through the predictor: each gets a prediction or InvalidImageError.

    python tests/fuzz_images.py [--examples 2000] [--seed 0]

tests/test_fuzz.py runs a fast slice of the same generator on every test run.
"""

from __future__ import annotations

import argparse
import io
import math
import struct
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from huskyai.images import InvalidImageError  # noqa: E402

FORMATS = ["JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "ICO", "PPM"]
MODES = ["RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "I;16", "I", "F"]


@st.composite
def base_image(draw) -> bytes:
    """A small valid image in some format and mode (some formats refuse some modes: then PNG)."""
    w, h = draw(st.integers(4, 120)), draw(st.integers(4, 120))
    mode = draw(st.sampled_from(MODES))
    seed = draw(st.integers(0, 2**16))
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr).convert(mode) if mode not in ("I;16", "I", "F") else \
        Image.fromarray(arr[:, :, 0].astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]) * 250)
    fmt = draw(st.sampled_from(FORMATS))
    for attempt in (img, img.convert("RGB")):  # not every format takes every mode
        buf = io.BytesIO()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                attempt.save(buf, fmt)
            return buf.getvalue()
        except (OSError, ValueError, KeyError, TypeError):
            continue
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def _png_with_size(width: int, height: int) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _gif_with_size(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x80\x00\x00" + b"\x00" * 6 + \
        b"\x2c\x00\x00\x00\x00" + struct.pack("<HH", width, height) + b"\x00\x02\x02\x44\x01\x00\x3b"


def _bmp_with_size(width: int, height: int) -> bytes:
    header = struct.pack("<2sIHHI", b"BM", 54 + 16, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 16, 2835, 2835, 0, 0)
    return header + info + b"\x00" * 16


@st.composite
def malformed_image(draw) -> bytes:
    kind = draw(st.sampled_from(["valid", "truncate", "bitflip", "header", "huge", "junk", "splice"]))
    if kind == "huge":
        maker = draw(st.sampled_from([_png_with_size, _gif_with_size, _bmp_with_size]))
        limit = 65535 if maker is not _png_with_size else 2**31 - 1
        return maker(draw(st.integers(1, limit)), draw(st.integers(1, limit)))
    if kind == "junk":
        magic = draw(st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"RIFF", b""]))
        return magic + draw(st.binary(max_size=300))
    data = draw(base_image())
    if kind == "truncate":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if kind == "bitflip":
        blob = bytearray(data)
        for _ in range(draw(st.integers(1, 16))):
            pos = draw(st.integers(0, len(blob) - 1))
            blob[pos] ^= 1 << draw(st.integers(0, 7))
        return bytes(blob)
    if kind == "header":
        n = draw(st.integers(1, min(32, len(data))))
        return draw(st.binary(min_size=n, max_size=n)) + data[n:]
    if kind == "splice":
        other = draw(base_image())
        return data[: len(data) // 2] + other[len(other) // 2:]
    return data


def check(model, data: bytes) -> str:
    """'ok' or 'refused'; anything else (another exception, a bad probability) is raised."""
    try:
        pred = model.predict(data)
    except InvalidImageError:
        return "refused"
    assert math.isfinite(pred.probability) and 0.0 <= pred.probability <= 1.0, pred
    assert abs(sum(pred.scores.values()) - 1.0) < 1e-4, pred
    return "ok"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from hypothesis import HealthCheck, given, seed, settings

    import huskyai

    model = huskyai.load()
    counts = {"ok": 0, "refused": 0}

    @seed(args.seed)
    @settings(max_examples=args.examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(malformed_image())
    def run(data: bytes) -> None:
        counts[check(model, data)] += 1

    start = time.time()
    run()
    total = sum(counts.values())
    print(f"{total} generated images in {time.time() - start:.0f} s: {counts['ok']} predicted, "
          f"{counts['refused']} refused with InvalidImageError, 0 other outcomes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
