"""Malformed, mutated and hostile images through the predictor: each gets a prediction or InvalidImageError.

    python tests/images/fuzz_images.py [N] [--seed 0] [--save-slowest PATH] [--decode-only]

Besides mutated small images it generates the shapes that once made decoding unbounded: RLE-compressed
BMP, extreme aspect ratios and long sides, big 16-bit, RGBA, palette and interlaced PNGs made of a few
hundred bytes, many-frame GIFs, GIF comment floods, progressive-JPEG scan floods, EXIF directory bombs,
marker and chunk floods, and header-only bombs of every format. Any other outcome (another exception, a
bad probability) is a crash: the run counts and reports them instead of stopping, with the slowest
case and the peak extra memory of any single case.

tests/test_fuzz.py runs a fast slice of the same generator on every test run.
"""

from __future__ import annotations

import argparse
import io
import math
import re
import struct
import sys
import time
import traceback
import warnings
import zlib
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from huskyai.errors import InvalidImageError
from huskyai.images.decode import describe

FORMATS = ["JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "ICO", "PPM"]
MODES = ["RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "I;16", "I", "F"]


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img.save(buf, fmt, **kwargs)
    return buf.getvalue()


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
    options = draw(st.sampled_from([{}, {"progressive": True}, {"interlace": 1}, {"lossless": True}]))
    for attempt, kw in ((img, options), (img, {}), (img.convert("RGB"), {})):  # not every format takes every mode
        try:
            return encode(attempt, fmt, **kw)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return encode(img.convert("RGB"), "PNG")


# ---------------------------------------------------------------------------------------------
# Hostile shapes: small files whose structure once made decoding slow or large.


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _png_with_size(width: int, height: int) -> bytes:
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


def png_solid(width: int, height: int, depth: int = 8, colour: int = 2, interlace: int = 0, rows: int | None = None,
              exif: bytes = b"") -> bytes:
    """A PNG of zero samples in any bit depth and colour type, streamed row by row: a few hundred bytes
    per megapixel. ``rows`` stops the data early (a truncated file); Adam7 when ``interlace``."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)] \
        if interlace else [(0, 0, 1, 1)]
    comp, parts, budget = zlib.compressobj(9), [], height if rows is None else rows
    for x0, y0, dx, dy in passes:
        cols, n = len(range(x0, width, dx)), len(range(y0, height, dy))
        row = b"\0" * (1 + (cols * channels * depth + 7) // 8)
        for _ in range(min(n, budget) if cols else 0):
            parts.append(comp.compress(row))
        budget -= n
    idat = b"".join(parts) + comp.flush()
    plte = png_chunk(b"PLTE", bytes(range(48))) if colour == 3 else b""
    return (b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))
            + plte + (png_chunk(b"eXIf", exif) if exif else b"") + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))


def _gif_with_size(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x80\x00\x00" + b"\x00" * 6 + \
        b"\x2c\x00\x00\x00\x00" + struct.pack("<HH", width, height) + b"\x00\x02\x02\x44\x01\x00\x3b"


def _bmp_with_size(width: int, height: int) -> bytes:
    header = struct.pack("<2sIHHI", b"BM", 54 + 16, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 16, 2835, 2835, 0, 0)
    return header + info + b"\x00" * 16


def rle_bmp(width: int, height: int, rle4: bool = False) -> bytes:
    """An RLE8 (or RLE4) BMP of end-of-line codes only: about 1 KB however wide; Pillow's decoder for
    it is Python, and took 17 s for 4,000,000x16 pixels."""
    pixels = b"\x00\x00" * min(height, 4096) + b"\x00\x01"
    colours = 16 if rle4 else 256
    palette = b"".join(bytes((i, i, i, 0)) for i in range(colours))
    offset = 14 + 40 + len(palette)
    header = struct.pack("<2sIHHI", b"BM", offset + len(pixels), 0, 0, offset)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 4 if rle4 else 8, 2 if rle4 else 1, len(pixels),
                       2835, 2835, colours, 0)
    return header + info + palette + pixels


def gif_frames(size: tuple[int, int], frames: int, comment: int = 0) -> bytes:
    """A GIF whose one solid frame is repeated ``frames`` times, after ``comment`` bytes of comment."""
    one = encode(Image.new("P", size, 7), "GIF")
    palette = 3 << ((one[10] & 7) + 1) if one[10] & 0x80 else 0
    start = one.index(b"\x2c", 13 + palette)
    frame = b"!\xf9\x04\x00\x0a\x00\x00\x00" + one[start:-1]
    note = b"!\xfe" + (b"\xff" + b"c" * 255) * (comment // 256) + b"\x00" if comment else b""
    return one[:start] + note + frame * frames + b";"


def jpeg_scan_flood(size: tuple[int, int], copies: int) -> bytes:
    """A flat progressive JPEG whose first AC scan is repeated: libjpeg walks every block once per copy."""
    data = encode(Image.new("RGB", size, (120, 130, 140)), "JPEG", progressive=True, quality=90)
    sos = [m.start() for m in re.finditer(rb"\xff\xda", data)]
    return data[:sos[2]] + data[sos[1]:sos[2]] * copies + data[sos[2]:]


def jpeg_with_segments(segments: list[tuple[int, bytes]], size: tuple[int, int] = (64, 64),
                       image: Image.Image | None = None, **kwargs) -> bytes:
    """A small JPEG with extra marker segments after its SOI."""
    data = encode(image or Image.new("RGB", size, "grey"), "JPEG", **kwargs)
    extra = b"".join(b"\xff" + bytes([m]) + struct.pack(">H", len(p) + 2) + p for m, p in segments)
    return data[:2] + extra + data[2:]


def tiff_directory(entries: int, data_size: int, orientation: int | None = None, blob_size: int = 65000,
                   typ: int = 7) -> bytes:
    """A little-endian TIFF directory (as in EXIF or MPF) whose ``entries`` all point at the same data:
    ``data_size`` values of TIFF type ``typ`` (7: bytes; 16: LONG8, 8 bytes each)."""
    rows = [struct.pack("<HHLL", 0x0112, 3, 1, orientation)] if orientation else []
    rows += [struct.pack("<HHLL", 0x8000 + i, typ, data_size, 8) for i in range(entries)]
    blob = b"II*\0" + struct.pack("<L", 8) + struct.pack("<H", len(rows)) + b"".join(rows) + b"\0\0\0\0"
    return blob + b"\0" * max(0, blob_size - len(blob))


def jpeg_with_size(width: int, height: int, progressive: bool = False, subsampling: int = 2) -> bytes:
    """A 64x64 JPEG whose frame header claims ``width`` x ``height``."""
    data = encode(Image.new("RGB", (64, 64), "grey"), "JPEG", progressive=progressive, subsampling=subsampling)
    sof = data.index(b"\xff\xc2" if progressive else b"\xff\xc0")
    return data[:sof + 5] + struct.pack(">HH", height, width) + data[sof + 9:]


def jpeg_partial_first_scan(width: int, height: int) -> bytes:
    """A 4:4:4 baseline JPEG header claiming ``width`` x ``height`` whose first scan carries only one of
    its three components: libjpeg then keeps every coefficient of the image, as for a progressive file."""
    data = jpeg_with_size(width, height, subsampling=0)
    sos = data.index(b"\xff\xda")
    length = int.from_bytes(data[sos + 2:sos + 4], "big")
    return data[:sos] + b"\xff\xda\x00\x08\x01" + data[sos + 5:sos + 7] + b"\x00\x3f\x00" + data[sos + 2 + length:]


def quant_tables(count: int) -> bytes:
    """``count`` 8-bit quantization tables, as one DQT segment's payload."""
    return b"".join(bytes([i % 4]) + bytes(range(1, 65)) for i in range(count))


def webp_with_size(width: int, height: int) -> bytes:
    """A lossless WebP header claiming ``width`` x ``height`` (at most 16384 each), data cut short."""
    bits = (width - 1) | ((height - 1) << 14)
    payload = b"\x2f" + struct.pack("<L", bits) + b"\x00" * 16
    return b"RIFF" + struct.pack("<L", 4 + 8 + len(payload)) + b"WEBPVP8L" + struct.pack("<L", len(payload)) + payload


@st.composite
def hostile_image(draw) -> bytes:
    """One of the shapes that once made decoding unbounded, at sizes from harmless to over the limits."""
    kind = draw(st.sampled_from(["rle_bmp", "aspect", "png_big", "gif_frames", "gif_comment", "jpeg_scans",
                                 "jpeg_segments", "exif", "png_chunks", "header", "jpeg_big", "jpeg_partial"]))
    side = st.integers(16, 20000)
    if kind == "rle_bmp":
        return rle_bmp(draw(st.integers(1, 4_000_000)), draw(st.integers(1, 4096)), draw(st.booleans()))
    if kind == "aspect":  # extreme aspect ratios and long sides, in a cheap file
        long, short = draw(st.integers(100, 70000)), draw(st.integers(1, 200))
        w, h = (long, short) if draw(st.booleans()) else (short, long)
        makers = [lambda w, h: png_solid(w, h, rows=4), lambda w, h: _gif_with_size(min(w, 65535), min(h, 65535)),
                  lambda w, h: jpeg_with_size(min(w, 65535), min(h, 65535)), rle_bmp]
        return draw(st.sampled_from(makers))(w, h)
    if kind == "png_big":  # 16-bit, RGBA, palette, interlaced: mostly refused, some decoded (up to 6 MP)
        depth, colour = draw(st.sampled_from([(16, 0), (16, 2), (16, 6), (8, 6), (8, 4), (8, 3), (1, 3), (1, 0),
                                              (16, 4), (8, 2)]))
        if draw(st.integers(0, 3)):
            w, h, rows = draw(st.integers(16, 3000)), draw(st.integers(16, 2000)), draw(
                st.one_of(st.none(), st.integers(0, 100)))
        else:  # up to 400 MP claimed: the data stops after a few rows (making it all would take minutes)
            w, h, rows = draw(side), draw(side), draw(st.integers(0, 64))
        return png_solid(w, h, depth, colour, draw(st.integers(0, 1)), rows=rows)
    if kind == "gif_frames":
        return gif_frames((draw(st.integers(16, 400)), draw(st.integers(16, 400))), draw(st.integers(1, 3000)))
    if kind == "gif_comment":
        data = gif_frames((32, 32), 1, comment=draw(st.integers(0, 600_000)))
        at = data.index(b"!")  # and empty extensions, which have no sub-blocks at all
        return data[:at] + b"!\xfe\x00" * draw(st.integers(0, 20000)) + data[at:]
    if kind == "jpeg_scans":
        return jpeg_scan_flood((draw(st.integers(16, 1500)), draw(st.integers(16, 1500))), draw(st.integers(0, 300)))
    if kind == "jpeg_segments":
        marker = draw(st.sampled_from([0xFE, 0xED, 0xE1, 0xE2, 0xE5, 0xDB, 0x00, 0x01]))
        if marker in (0x00, 0x01):  # escaped 0xFF and standalone markers where segments belong
            return b"\xff\xd8" + bytes([0xFF, marker]) * draw(st.integers(0, 200_000)) + \
                jpeg_with_segments([])[2:]
        payload = {0xED: b"Photoshop 3.0\0" + b"8BIM\x04\x04\0\0\0\0\0\0" * draw(st.integers(0, 3000)),
                   0xE1: b"Exif\0\0" + tiff_directory(draw(st.integers(0, 600)), draw(st.integers(0, 60000)),
                                                       typ=draw(st.sampled_from([7, 16]))),
                   0xDB: quant_tables(draw(st.integers(1, 1000))),
                   0xE2: b"MPF\0" + tiff_directory(draw(st.integers(0, 600)), draw(st.integers(0, 60000)))}
        body = payload.get(marker, b"")
        return jpeg_with_segments([(marker, body)] * min(draw(st.integers(1, 700)), 10_600_000 // (len(body) + 4)))
    if kind == "exif":  # orientation beside a directory bomb, in PNG (Pillow does not parse it on open)
        exif = tiff_directory(draw(st.integers(0, 3000)), 200_000, draw(st.integers(0, 9)), 200_000)
        return png_solid(draw(st.integers(16, 300)), draw(st.integers(16, 300)), exif=exif)
    if kind == "png_chunks":
        base = encode(Image.new("RGB", (32, 32), "red"), "PNG")
        tag = draw(st.sampled_from([b"abCd", b"tEXt", b"IDAT"]))
        return base[:33] + png_chunk(tag, b"k\0v" if tag == b"tEXt" else b"") * draw(st.integers(0, 20000)) + base[33:]
    if kind == "jpeg_partial":
        return jpeg_partial_first_scan(draw(side), draw(side))
    if kind == "jpeg_big":
        return jpeg_with_size(draw(side), draw(side), draw(st.booleans()))
    maker = draw(st.sampled_from([_png_with_size, _gif_with_size, _bmp_with_size, webp_with_size]))
    limit = {_png_with_size: 2**31 - 1, webp_with_size: 16384}.get(maker, 65535)
    return maker(draw(st.integers(1, limit)), draw(st.integers(1, limit)))


@st.composite
def malformed_image(draw) -> bytes:
    kind = draw(st.sampled_from(["valid", "truncate", "bitflip", "header", "huge", "junk", "splice", "hostile"]))
    if kind == "hostile":
        return draw(hostile_image())
    if kind == "huge":
        maker = draw(st.sampled_from([_png_with_size, _gif_with_size, _bmp_with_size]))
        limit = 65535 if maker is not _png_with_size else 2**31 - 1
        return maker(draw(st.integers(1, limit)), draw(st.integers(1, limit)))
    if kind == "junk":
        magic = draw(st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"RIFF", b""]))
        return magic + draw(st.binary(max_size=300))
    data = draw(st.one_of(base_image(), hostile_image()) if kind in ("bitflip", "truncate") else base_image())
    if kind == "truncate":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if kind == "bitflip":
        blob = bytearray(data)
        for _ in range(draw(st.integers(1, 16))):
            pos = draw(st.integers(0, min(len(blob) - 1, draw(st.sampled_from([64, 1024, 1 << 30])))))
            blob[pos] ^= 1 << draw(st.integers(0, 7))
        return bytes(blob)
    if kind == "header":
        n = draw(st.integers(1, min(32, len(data))))
        return draw(st.binary(min_size=n, max_size=n)) + data[n:]
    if kind == "splice":
        other = draw(base_image())
        return data[: len(data) // 2] + other[len(other) // 2:]
    return data


def check(model, data: bytes, decode_only: bool = False) -> str:
    """'ok' or 'refused'; anything else (another exception, a bad probability) is raised.
    ``decode_only`` stops after the predictor's preprocessing (decode, crop, resize, normalise)."""
    try:
        if decode_only:
            x = model.preprocess(data)
            assert x.shape == (3, model.size, model.size) and np.isfinite(x).all(), x.shape
            return "ok"
        pred = model.predict(data)
    except InvalidImageError:
        return "refused"
    p = pred.positive_probability
    assert math.isfinite(p) and 0.0 <= p <= 1.0, pred
    assert abs(sum(pred.scores.values()) - 1.0) < 1e-4, pred
    return "ok"


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return 0.0


def label(data: bytes) -> str:
    info = describe(data)
    if info["image_format"]:
        return f"{info['image_format']} {info['width']}x{info['height']}, {len(data):,} bytes"
    return f"{data[:8]!r}..., {len(data):,} bytes"


def single_threaded(model) -> None:
    """Run ONNX Runtime on one non-spinning thread: on a shared 2-core VM its spinning pool made each
    inference take 300 ms instead of 10 (the model and its weights are the ones just verified)."""
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        session = model.engine.session
        graph = (model.export_dir / "model.onnx").read_bytes()
        model.engine.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        del session
    except (AttributeError, ImportError, OSError):
        pass  # another engine: leave it as it is


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, help="number of generated images (default 2000)")
    parser.add_argument("--examples", type=int, default=2000, help="the same as N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-slowest", type=Path, help="write the slowest case's bytes here")
    parser.add_argument("--decode-only", action="store_true",
                        help="stop at the predictor's preprocessing: the whole input path without the network "
                             "(for long runs on a busy machine, where inference dominates)")
    args = parser.parse_args()
    from hypothesis import HealthCheck, given, seed, settings

    import huskyai

    model = huskyai.load()
    single_threaded(model)
    model.predict(encode(Image.new("RGB", (64, 64), "white"), "PNG"))  # warm-up
    counts = {"ok": 0, "refused": 0, "crash": 0}
    crashes: list[str] = []
    slowest = (0.0, b"")
    peak = (0.0, b"")
    process_peak = 0.0
    can_reset_peak = Path("/proc/self/clear_refs").exists()
    n = args.n or args.examples

    @seed(args.seed)
    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(malformed_image())
    def run(data: bytes) -> None:
        nonlocal slowest, peak, process_peak
        if can_reset_peak:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS, so the peak is this case's
        before = _status_mb("VmRSS")
        t = time.perf_counter()
        try:
            counts[check(model, data, args.decode_only)] += 1
        except Exception:  # noqa: BLE001 - a crash is counted and reported, and the run goes on
            counts["crash"] += 1
            if len(crashes) < 20:
                crashes.append(f"{label(data)}: {traceback.format_exc(limit=3)}")
        took = time.perf_counter() - t
        hwm = _status_mb("VmHWM")
        extra, process_peak = hwm - before, max(process_peak, hwm)
        if took > slowest[0]:
            slowest = (took, data)
        if extra > peak[0]:
            peak = (extra, data)
        done = sum(counts.values())
        if done % 10000 == 0:
            print(f"  {done} done, {counts}, slowest {slowest[0]:.2f} s, peak {peak[0]:.0f} MB", flush=True)

    start = time.time()
    run()
    total = sum(counts.values())
    print(f"{total} generated images (seed {args.seed}) in {time.time() - start:.0f} s: {counts['ok']} "
          f"{'decoded and preprocessed' if args.decode_only else 'predicted'}, "
          f"{counts['refused']} refused with InvalidImageError, {counts['crash']} crashes (other outcomes)")
    print(f"slowest case: {slowest[0]:.2f} s ({label(slowest[1])})")
    print(f"largest peak extra memory of one case: {peak[0]:.0f} MB ({label(peak[1])}); "
          f"process peak RSS {process_peak:.0f} MB")
    for crash in crashes:
        print("CRASH", crash)
    if args.save_slowest:
        args.save_slowest.write_bytes(slowest[1])
    return 1 if counts["crash"] else 0


if __name__ == "__main__":
    sys.exit(main())
