"""Bounded decoding: the worst files of 10 MB or less, each answered (predicted or refused) within the limits.

    python bench/decode.py [--only SUBSTRING] [--limit-s 2] [--limit-mb 400] [--pillow]
    python bench/decode.py --quality N

Every case runs in a fresh child process that loads the shipped model and predicts once on a small
photo (warm-up); then the peak-RSS counter is reset (/proc/self/clear_refs), the case's bytes go
through ``model.predict`` as the app hands them over, and the child reports wall time, the peak
extra RSS over its RSS just before, and the outcome. The first case, a 12 MP phone-style photo, is
the baseline: the ratio column is each case's time against it, in the same run (this VM's speed
drifts, and 2 cores are shared). With ``--pillow`` each case is also decoded by plain Pillow
(open, load) in a child of its own, to show what the limits stop (capped at 30 s).

``--quality N`` checks that decoding large photos reduced changes no prediction beyond noise: skimage's
photos and N husky photos from ../shared, upscaled to a 6000 px short side, predicted as served and
through a full-size decode with the predictor's own centre crop and resize.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent  # for examples/ and ../shared; huskyai is pip-installed
MB = 1024 * 1024

CHILD = """
import json, resource, sys, time
from pathlib import Path
from huskyai.images import InvalidImageError
import huskyai
model = huskyai.load()
model.predict(str(Path({root!r}) / "examples" / "chelsea.jpg"))
data = Path(sys.argv[1]).read_bytes()

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024

Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
before = status("VmRSS")
cpu0, t0 = time.process_time(), time.perf_counter()
try:
    pred = model.predict(data, "case")
    outcome = f"predicted {{pred.label}} {{pred.positive_probability:.3f}}"
except InvalidImageError as err:
    outcome = "refused: " + str(err).removeprefix("case: ")
seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
print(json.dumps(dict(seconds=seconds, cpu=cpu, extra_mb=status("VmHWM") - before, outcome=outcome)))
"""

PILLOW_CHILD = """
import io, sys, time, warnings
from pathlib import Path
from PIL import Image
warnings.simplefilter("ignore")
Image.MAX_IMAGE_PIXELS = None
data = Path(sys.argv[1]).read_bytes()
t0 = time.perf_counter()
try:
    im = Image.open(io.BytesIO(data))
    im.load()
    out = f"{im.size[0]}x{im.size[1]}"
except Exception as err:
    out = type(err).__name__
hwm = [l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM")][0].split()[1]
print(f"{time.perf_counter() - t0:.2f} s, peak RSS {int(hwm) / 1024:.0f} MB, {out}")
"""


# ---------------------------------------------------------------------------------------------
# Builders: each returns the bytes of one file of at most 10 MB.


def save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def textured(size: tuple[int, int], mode: str = "RGB", seed: int = 0, cells: int = 400) -> Image.Image:
    """Smooth random texture: compresses like a photo, cheap to make at any size."""
    rng = np.random.default_rng(seed)
    w, h = size
    small = rng.integers(0, 256, (max(2, h * cells // max(w, h)), max(2, w * cells // max(w, h)), 4), np.uint8)
    img = Image.fromarray(small, "RGBA").resize(size, Image.BILINEAR)
    return img if mode == "RGBA" else img.convert(mode)


def photo(size: tuple[int, int]) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).resize(size, Image.BICUBIC)


def jpeg_within(img: Image.Image, limit: int = 10 * MB, **kw) -> bytes:
    for quality in (90, 80, 70, 60, 50, 40, 30, 20):
        data = save(img, "JPEG", quality=quality, **kw)
        if len(data) <= limit:
            return data
    return data


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int, depth: int = 8, colour: int = 2) -> bytes:
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + png_chunk(b"IEND", b""))


def png_solid(width: int, height: int, depth: int, colour: int, interlace: int = 0) -> bytes:
    """A PNG of zero samples, streamed row by row (a few hundred KB for any size); Adam7 when interlaced."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)] \
        if interlace else [(0, 0, 1, 1)]
    comp, parts = zlib.compressobj(9), []
    for x0, y0, dx, dy in passes:
        cols, rows = len(range(x0, width, dx)), len(range(y0, height, dy))
        row = b"\0" * (1 + (cols * channels * depth + 7) // 8)
        parts += [comp.compress(row) for _ in range(rows if cols else 0)]
    idat = b"".join(parts) + comp.flush()
    plte = png_chunk(b"PLTE", b"\0\0\0") if colour == 3 else b""
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0,
                                                                     interlace))
            + plte + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))


def rle_bmp(width: int, height: int) -> bytes:
    """An RLE8 BMP of end-of-line codes only: about 1 KB, however wide."""
    pixels = b"\x00\x00" * height + b"\x00\x01"
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    offset = 14 + 40 + len(palette)
    header = struct.pack("<2sIHHI", b"BM", offset + len(pixels), 0, 0, offset)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    return header + info + palette + pixels


def many_frame_gif(size: tuple[int, int], limit: int = 10 * MB) -> bytes:
    """One frame's encoding repeated until the file is ``limit`` bytes: thousands of frames."""
    one = save(Image.new("P", size, 7), "GIF")
    palette = 3 << ((one[10] & 7) + 1) if one[10] & 0x80 else 0
    start = one.index(b"\x2c", 13 + palette)  # the image descriptor, after the global palette
    frame = b"!\xf9\x04\x00\x0a\x00\x00\x00" + one[start:-1]  # a 0.1 s delay, then the image
    loop = b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    return one[:start] + loop + frame * ((limit - start - 100) // len(frame)) + b";"


def gif_comment_flood(limit: int = 10 * MB) -> bytes:
    base = save(Image.new("P", (64, 64), 1), "GIF")
    comment = b"!\xfe" + (b"\xff" + b"c" * 255) * ((limit - 1000) // 256) + b"\0"
    at = 13 + (3 << ((base[10] & 7) + 1) if base[10] & 0x80 else 0)
    return base[:at] + comment + base[at:]


def gif_empty_extensions(limit: int = 10 * MB) -> bytes:
    base = save(Image.new("P", (64, 64), 1), "GIF")
    at = 13 + (3 << ((base[10] & 7) + 1) if base[10] & 0x80 else 0)
    return base[:at] + b"!\xfe\x00" * ((limit - len(base)) // 3) + base[at:]


def jpeg_scan_bomb(size: tuple[int, int], copies: int) -> bytes:
    """A flat progressive JPEG whose first AC scan is repeated ``copies`` times: libjpeg walks every
    block again for each copy (a few bytes each, thanks to end-of-band runs)."""
    data = save(Image.new("RGB", size, (120, 130, 140)), "JPEG", progressive=True, quality=90)
    import re
    sos = [m.start() for m in re.finditer(rb"\xff\xda", data)]
    scan = data[sos[1]:sos[2]]
    return data[:sos[2]] + scan * copies + data[sos[2]:]


def jpeg_header_only(width: int, height: int) -> bytes:
    data = save(Image.new("RGB", (64, 64), "grey"), "JPEG")
    sof = data.index(b"\xff\xc0")
    return data[:sof + 5] + struct.pack(">HH", height, width) + data[sof + 9:]


def exif_rotated_jpeg(size: tuple[int, int]) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg_within(textured(size), exif=exif.tobytes())


def exif_directory_bomb() -> bytes:
    """EXIF whose 5,000 entries all point at the same 60 KB: Pillow reads each on open."""
    entries = b"".join(struct.pack("<HHLL", 0x100 + i, 7, 60000, 8) for i in range(5000))
    blob = b"II*\0" + struct.pack("<L", 8) + struct.pack("<H", 5000) + entries + b"\0\0\0\0"
    blob = b"Exif\0\0" + blob + b"\0" * (65000 - len(blob))
    base = save(Image.new("RGB", (64, 64), "red"), "JPEG")
    return base[:2] + b"\xff\xe1" + struct.pack(">H", len(blob) + 2) + blob + base[2:]


def exif_long8_bomb() -> bytes:
    """EXIF whose 256 entries are LONG8 (TIFF type 16) values spanning the whole 520 KB directory,
    split over 8 APP1 segments as Pillow joins them: Pillow reads each entry's data on open."""
    size = 8 * 65000
    entries = b"".join(struct.pack("<HHLL", 0x8000 + i, 16, (size - 8) // 8, 8) for i in range(256))
    blob = b"II*\0" + struct.pack("<L", 8) + struct.pack("<H", 256) + entries + b"\0\0\0\0"
    blob += b"\0" * (size - len(blob))
    segments = b"".join(b"\xff\xe1" + struct.pack(">H", 65000 + 8) + b"Exif\0\0" + blob[i:i + 65000]
                        for i in range(0, size, 65000))
    base = save(Image.new("RGB", (64, 64), "red"), "JPEG")
    return base[:2] + segments + base[2:]


def quant_table_flood(limit: int = 10 * MB) -> bytes:
    """DQT segments of 1,008 quantization tables each: Pillow unpacks every table in Python."""
    body = (b"\x00" + bytes(range(1, 65))) * 1008
    seg = b"\xff\xdb" + struct.pack(">H", len(body) + 2) + body
    base = save(Image.new("RGB", (64, 64), "red"), "JPEG")
    return base[:2] + seg * ((limit - 2000) // len(seg)) + base[2:]


def photoshop_flood(limit: int = 10 * MB) -> bytes:
    ps = b"Photoshop 3.0\0" + (b"8BIM\x04\x04\0\0\0\0\0\0") * 5400
    seg = b"\xff\xed" + struct.pack(">H", len(ps) + 2) + ps
    base = save(Image.new("RGB", (64, 64), "red"), "JPEG")
    return base[:2] + seg * (limit // len(seg)) + base[2:]


def png_ancillary_flood(limit: int = 10 * MB) -> bytes:
    base = save(Image.new("RGB", (64, 64), "red"), "PNG")
    return base[:33] + png_chunk(b"abCd", b"") * (limit // 12 - 100) + base[33:]


def cases() -> list[tuple[str, callable]]:
    """(name, builder) for every case; the first is the baseline."""
    side16 = (16384, 1640)  # longest side and aspect at their limits
    return [
        ("baseline: 12 MP photo, JPEG", lambda: jpeg_within(photo((4000, 3000)))),
        ("JPEG 48 MP baseline 4:2:0", lambda: jpeg_within(textured((8000, 6000)))),
        ("JPEG 48 MP progressive 4:2:0", lambda: jpeg_within(textured((8000, 6000)), progressive=True)),
        ("JPEG 25 MP progressive 4:4:4", lambda: jpeg_within(textured((5800, 4350)), progressive=True, subsampling=0)),
        ("JPEG 48 MP progressive 4:4:4 (over)", lambda: jpeg_within(textured((8000, 6000)), progressive=True,
                                                                   subsampling=0)),
        ("JPEG 20 MP progressive CMYK", lambda: jpeg_within(textured((5150, 3860), "CMYK"), progressive=True)),
        ("JPEG 48 MP EXIF-rotated", lambda: exif_rotated_jpeg((8000, 6000))),
        ("JPEG 12000x1400 baseline (full size)", lambda: jpeg_within(textured((12000, 1400)))),
        ("JPEG 16384x1640 baseline (over)", lambda: jpeg_within(textured(side16))),
        ("JPEG 16384x1640 progressive (over)", lambda: jpeg_within(textured(side16), progressive=True)),
        ("JPEG scan bomb at the limits", lambda: jpeg_scan_bomb((8000, 6000), 10)),
        ("JPEG scan bomb, 10 MB (over)", lambda: jpeg_scan_bomb((8000, 6000), 60000)),
        ("JPEG header 65500x65500", lambda: jpeg_header_only(65500, 65500)),
        ("JPEG EXIF directory bomb", exif_directory_bomb),
        ("JPEG Photoshop-block flood", photoshop_flood),
        ("JPEG EXIF LONG8 directory", exif_long8_bomb),
        ("JPEG 10 MB quantization tables", quant_table_flood),
        ("JPEG 5M escaped 0xFF before SOS", lambda: b"\xff\xd8" + b"\xff\x00" * (5 * MB - 400)
         + save(Image.new("RGB", (64, 64)), "JPEG")[2:]),
        ("JPEG 2.5M empty comments", lambda: save(Image.new("RGB", (64, 64)), "JPEG")[:2]
         + b"\xff\xfe\x00\x02" * (10 * MB // 4 - 200) + save(Image.new("RGB", (64, 64)), "JPEG")[2:]),
        ("PNG 8000x8000 16-bit grey", lambda: save(Image.new("I;16", (8000, 8000), 40000), "PNG")),
        ("PNG 16-bit RGBA 33 MP", lambda: png_solid(6600, 5000, 16, 6)),
        ("PNG 16-bit RGBA 16 MP interlaced", lambda: png_solid(4600, 3500, 16, 6, interlace=1)),
        ("PNG 16-bit RGBA 33 MP interlaced (over)", lambda: png_solid(6600, 5000, 16, 6, interlace=1)),
        ("PNG 16-bit RGBA 48 MP (over)", lambda: png_solid(8000, 6000, 16, 6)),
        ("PNG RGBA 45 MP", lambda: save(Image.new("RGBA", (7750, 5800), (200, 30, 30, 128)), "PNG")),
        ("PNG RGBA 10200x2300 (full size)", lambda: save(Image.new("RGBA", (10200, 2300), (200, 30, 30, 128)),
                                                         "PNG")),
        ("PNG grey 16384x1640 interlaced", lambda: png_solid(*side16, 8, 0, interlace=1)),
        ("PNG grey 16384x2300, 42 KB (heatmap bomb)", lambda: save(Image.new("L", (16384, 2300), 128), "PNG")),
        ("PNG RGB 16384x1640 interlaced (over)", lambda: png_solid(*side16, 8, 2, interlace=1)),
        ("PNG LA 45 MP", lambda: save(Image.new("LA", (7750, 5800), (90, 128)), "PNG")),
        ("PNG palette 64 MP, transparent", lambda: save(Image.new("P", (8000, 8000), 3), "PNG", transparency=3)),
        ("PNG 1-bit 64 MP", lambda: save(Image.new("1", (8000, 8000), 1), "PNG")),
        ("PNG RGB 64 MP (over)", lambda: save(Image.new("RGB", (8000, 8000), "green"), "PNG")),
        ("PNG header 20000x20000", lambda: png_header_only(20000, 20000)),
        ("PNG header 4000000x16", lambda: png_header_only(4_000_000, 16)),
        ("PNG 830k ancillary chunks", png_ancillary_flood),
        ("GIF 64 MP first frame", lambda: save(Image.new("P", (8000, 8000), 5), "GIF")),
        ("GIF many frames, 10 MB", lambda: many_frame_gif((1200, 900))),
        ("GIF 10 MB comment", gif_comment_flood),
        ("GIF 3.3M empty extensions", gif_empty_extensions),
        ("GIF header 65535x65535", lambda: save(Image.new("P", (64, 64), 1), "GIF")[:6] + b"\xff\xff\xff\xff"
         + save(Image.new("P", (64, 64), 1), "GIF")[10:]),
        ("BMP RLE8 4000000x16", lambda: rle_bmp(4_000_000, 16)),
        ("BMP RLE8 16384x1640", lambda: rle_bmp(*side16)),
        ("BMP 24-bit 10 MB", lambda: save(textured((2040, 1700)), "BMP")),
        ("BMP 1-bit 64 MP", lambda: save(Image.new("1", (8000, 8000), 1), "BMP")),
        ("BMP 8-bit 10 MP", lambda: save(textured((3600, 2900)).convert("P"), "BMP")),
        ("WebP lossless 10000x1000", lambda: save(Image.new("RGB", (10000, 1000), "red"), "WEBP", lossless=True)),
        ("WebP lossy 4400x3290", lambda: save(textured((4400, 3290)), "WEBP", quality=80)),
        ("WebP lossless RGBA 4400x3290", lambda: save(Image.new("RGBA", (4400, 3290), (9, 99, 9, 99)), "WEBP",
                                                      lossless=True)),
        ("WebP lossy 5000x3300 (over)", lambda: save(textured((5000, 3300)), "WEBP", quality=80)),
        ("WebP animated, 200 frames", lambda: save(Image.new("RGB", (2000, 1500), "red"), "WEBP", save_all=True,
                                                   append_images=[Image.new("RGB", (2000, 1500), c)
                                                                  for c in ("blue", "green")] * 100, quality=50)),
        ("WebP header 16383x16383", lambda: save(Image.new("RGB", (16383, 16383), "red"), "WEBP", lossless=True)),
    ]


def run_case(path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), str(path)], capture_output=True,
                         text=True, timeout=300)
    if out.returncode != 0:
        return dict(seconds=float("nan"), cpu=float("nan"), extra_mb=float("nan"),
                    outcome="CRASH: " + (out.stderr.strip().splitlines() or ["?"])[-1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_pillow(path: Path) -> str:
    try:
        out = subprocess.run([sys.executable, "-c", PILLOW_CHILD, str(path)], capture_output=True, text=True,
                             timeout=30)
        return out.stdout.strip() or out.stderr.strip().splitlines()[-1]
    except subprocess.TimeoutExpired:
        return "over 30 s (stopped)"


def quality(n_shared: int) -> None:
    """Does reduced decoding change predictions? Each photo, upscaled to a large JPEG (and PNG), is
    predicted as served (draft or box reduction) and through a full-size decode with the predictor's
    own centre crop and resize, the path before bounded decoding."""
    import huskyai
    from huskyai.inference.preprocess import crop_resize

    model = huskyai.load()

    def full_size(data: bytes) -> float:
        """The predictor's crop and resize on Pillow's full-size decode; the model input is then
        already model.size square, which the predictor passes through unchanged."""
        img = Image.open(io.BytesIO(data)).convert("RGB")
        return model.predict(crop_resize(img, model.size)).positive_probability

    from skimage import data as skdata
    sources = [(n, Image.fromarray(getattr(skdata, n)()).convert("RGB"))
               for n in ("astronaut", "chelsea", "coffee", "rocket", "cat", "hubble_deep_field")]
    shared = sorted((ROOT.parent / "shared" / "data" / "huskies-web" / "husky").glob("*.jpg"))
    shared += sorted((ROOT.parent / "shared" / "data" / "huskies" / "husky").glob("*.jpg"))
    step = max(1, len(shared) // max(1, n_shared))
    sources += [(p.name, Image.open(p).convert("RGB")) for p in shared[::step][:n_shared]]
    print(f"{'photo':28} {'large size':>11} {'decoded':>10} {'p full':>7} {'p served':>8} {'diff':>7}")
    diffs, flips, threshold = [], 0, float(getattr(model, "threshold", 0.5))
    for name, img in sources:
        scale = 6000 / min(img.size)  # upscaled so the short side is 6000 px: decoded at 1/8 (JPEG)
        big = img.resize((round(img.size[0] * scale), round(img.size[1] * scale)), Image.BICUBIC)
        if big.size[0] * big.size[1] > 64_000_000:
            big = big.crop((0, 0, min(big.size[0], 10000), min(big.size[1], 6000)))
        for fmt in ("JPEG", "PNG") if name in ("astronaut", "chelsea") else ("JPEG",):
            data = jpeg_within(big) if fmt == "JPEG" else save(big, "PNG", compress_level=1)
            if len(data) > 10 * MB:
                continue
            from huskyai.images.decode import load_image
            decoded = load_image(data).size
            p_full, p_served = full_size(data), model.predict(data).positive_probability
            diffs.append(abs(p_full - p_served))
            flips += (p_full >= threshold) != (p_served >= threshold)
            print(f"{name[:22] + ' ' + fmt:28} {big.size[0]:5}x{big.size[1]:<5} {decoded[0]:4}x{decoded[1]:<5} "
                  f"{p_full:7.4f} {p_served:8.4f} {p_served - p_full:+7.4f}", flush=True)
    print(f"\n{len(diffs)} large photos: |p served - p full| mean {np.mean(diffs):.4f}, max {np.max(diffs):.4f}; "
          f"{flips} labels changed at the card's threshold {threshold:g}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run only cases whose name contains this (and the baseline)")
    parser.add_argument("--limit-s", type=float, default=2.0)
    parser.add_argument("--limit-mb", type=float, default=400.0)
    parser.add_argument("--pillow", action="store_true", help="also decode each case with plain Pillow")
    parser.add_argument("--quality", type=int, metavar="N", help="instead: compare predictions of reduced and "
                        "full-size decoding on skimage photos and N shared husky photos, upscaled")
    args = parser.parse_args()
    if args.quality is not None:
        quality(args.quality)
        return 0
    chosen = [c for i, c in enumerate(cases()) if i == 0 or args.only.lower() in c[0].lower()]
    failures, base = 0, None
    print(f"{'case':40} {'KB':>7} {'wall s':>7} {'cpu s':>6} {'x base':>6} {'peak MB':>8}  outcome")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, build) in enumerate(chosen):
            path = Path(tmp) / f"case{i}"
            data = build()
            assert len(data) <= 10 * MB, (name, len(data))
            path.write_bytes(data)
            r = run_case(path)
            base = base or r["seconds"]
            crashed = r["outcome"].startswith("CRASH")
            ok = r["seconds"] <= args.limit_s and r["extra_mb"] <= args.limit_mb and not crashed
            failures += not ok
            print(f"{name:40} {len(data) / 1024:7.0f} {r['seconds']:7.2f} {r['cpu']:6.2f} {r['seconds'] / base:6.1f} "
                  f"{r['extra_mb']:8.0f}  {'' if ok else 'OVER LIMIT '}{r['outcome'][:110]}", flush=True)
            if args.pillow:
                print(f"{'':40} plain Pillow: {run_pillow(path)}", flush=True)
    print(f"\n{len(chosen)} cases, limits {args.limit_s:g} s and {args.limit_mb:g} MB extra: "
          f"{'all within' if not failures else f'{failures} over'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
