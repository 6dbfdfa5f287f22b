"""The untrusted-image decoder: odd but valid images decode right, bad ones get a clear error."""

from __future__ import annotations

import io
import os
import re
import tracemalloc

import numpy as np
import pytest
from fuzz_images import (
    _gif_with_size,
    gif_frames,
    jpeg_partial_first_scan,
    jpeg_scan_flood,
    jpeg_with_segments,
    jpeg_with_size,
    png_chunk,
    png_solid,
    quant_tables,
    rle_bmp,
    tiff_directory,
    webp_with_size,
)
from PIL import Image, ImageFile

from conftest import bad_files, jpeg_bytes, skimage_photo
from huskyai.errors import DataError, InvalidImageError
from huskyai.images.decode import (
    MAX_FILE_BYTES,
    NotFollowedError,
    describe,
    file_identity,
    load_image,
    read_limited,
)
from huskyai.images.folders import scan, scan_many


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("name,expected", [
    ("text.jpg", "not a supported image"),
    ("truncated.jpg", "truncated"),
    ("empty.jpg", "empty"),
    ("tiny.png", "too small"),
    ("bomb.png", "megapixels"),
])
def test_bad_files_get_a_clear_error_naming_the_file(tmp_path, name, expected):
    path = tmp_path / name
    path.write_bytes(bad_files()[name])
    with pytest.raises(InvalidImageError, match=expected) as info:
        load_image(path)
    assert name in str(info.value)


def test_every_allowed_format_decodes_to_rgb():
    photo = skimage_photo("coffee").resize((120, 80))
    for fmt in ("JPEG", "PNG", "WEBP", "BMP", "GIF"):
        img = load_image(encode(photo, fmt))
        assert img.mode == "RGB" and img.size == (120, 80), fmt


def test_format_is_judged_by_content_not_name(tmp_path):
    path = tmp_path / "photo.png"  # a JPEG with a .png name is still fine
    path.write_bytes(jpeg_bytes(skimage_photo("coffee")))
    assert load_image(path).size == (600, 400)
    tiff = encode(skimage_photo("coffee"), "TIFF")  # a real image, but not an allowed format
    with pytest.raises(InvalidImageError, match="not a supported image"):
        load_image(tiff)


def test_exif_orientation_is_applied():
    photo = Image.new("RGB", (200, 100), "red")
    photo.paste((0, 0, 255), (0, 0, 100, 100))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img = load_image(encode(photo, "JPEG", exif=exif.tobytes()))
    assert img.size == (100, 200)
    top = np.asarray(img)[10, 50]
    assert top[2] > 200 and top[0] < 60  # the blue half is now on top


def test_modes_convert_correctly():
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # fully transparent: composited on white
    assert np.asarray(load_image(encode(rgba, "PNG"))).min() == 255
    grey16 = Image.fromarray(np.full((64, 64), 65535, dtype=np.uint16))  # 16-bit white, not clipped nonsense
    img = load_image(encode(grey16, "PNG"))
    assert img.mode == "RGB" and np.asarray(img).min() == 255
    mid16 = Image.fromarray(np.full((64, 64), 32768, dtype=np.uint16))
    assert abs(int(np.asarray(load_image(encode(mid16, "PNG"))).mean()) - 128) <= 1
    cmyk = Image.new("CMYK", (64, 64), (0, 255, 255, 0))  # pure red in CMYK
    r, g, b = np.asarray(load_image(encode(cmyk, "JPEG"))).reshape(-1, 3).mean(0)
    assert r > 200 and g < 60 and b < 60
    palette = skimage_photo("coffee").convert("P")
    assert load_image(encode(palette, "PNG")).mode == "RGB"


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (64, 64), c) for c in ("green", "red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    r, g, b = np.asarray(load_image(buf.getvalue())).reshape(-1, 3).mean(0)
    assert g > 100 and r < 50 and b < 50


def test_arrays_and_pil_images():
    arr = np.asarray(skimage_photo("coffee"))
    assert load_image(arr).size == (600, 400)
    assert load_image(arr.astype(np.float32) / 255).size == (600, 400)
    assert load_image(skimage_photo("coffee").convert("L")).mode == "RGB"
    with pytest.raises(InvalidImageError, match="shape"):
        load_image(np.zeros((10, 10, 7), np.uint8))
    with pytest.raises(InvalidImageError, match=r"\[0, 1\]"):
        load_image(np.full((32, 32, 3), 7.0))
    with pytest.raises(InvalidImageError, match="cannot read an image from int"):
        load_image(42)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidImageError, match="cannot read file"):
        load_image(tmp_path / "nope.jpg")


def test_only_a_regular_file_is_read_and_never_through_a_link(tmp_path):
    """A pipe or a device reports size 0 (the size check alone would read /dev/zero for ever), a FIFO would
    block the open, and a link could point a "photo" at a secret: each is refused before a byte is read."""
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)  # nobody writes to it: a blocking open would hang here
    for path in (fifo, "/dev/zero"):
        with pytest.raises(InvalidImageError, match="not a regular file"):
            read_limited(path, max_bytes=1000)
    secret = tmp_path / "secret.key"
    secret.write_bytes(b"\xff" * 100)
    link = tmp_path / "link.jpg"
    link.symlink_to(secret)
    with pytest.raises(NotFollowedError, match="link.jpg: a symbolic link, not followed"):
        load_image(link)
    assert read_limited(secret) == b"\xff" * 100
    with pytest.raises(InvalidImageError, match="file is 0.0 MB, the limit is 0 MB"):
        read_limited(secret, max_bytes=10)
    moved = tmp_path / "other.key"
    moved.write_bytes(b"other")
    with pytest.raises(InvalidImageError, match="replaced since the folder was scanned"):  # not the file scanned
        read_limited(moved, identity=file_identity(os.lstat(secret)))


def test_a_photo_set_follows_no_link_and_names_its_photos_by_folder(tmp_path):
    """The one folder scan, as training and the label doctor use it: a photo that is a link to a file outside
    and a label's sub-folder that links elsewhere are reported and never read; every other file is judged by
    its content; two data folders of one name are refused for training and told apart by path for the doctor."""
    outside = tmp_path / "outside"
    outside.mkdir()
    skimage_photo("coffee").resize((64, 48)).save(outside / "private.jpg")
    sets = []
    for parent in ("a", "b"):
        data = tmp_path / parent / "photos"
        for label in ("husky", "not_husky"):
            (data / label / "deeper").mkdir(parents=True)
            skimage_photo("astronaut").resize((64, 64)).save(data / label / "deeper" / "one.png")
            skimage_photo("chelsea").resize((64, 48)).save(data / label / "no_suffix", format="PNG")
        (data / "husky" / "linked.jpg").symlink_to(outside / "private.jpg")
        (data / "not_husky" / "album").symlink_to(outside, target_is_directory=True)
        sets.append(data)
    lines: list[str] = []
    photos = scan(sets[0], report=lines.append)
    assert sorted(s.path.relative_to(sets[0]).as_posix() for s in photos.samples) == [
        "husky/deeper/one.png", "husky/no_suffix", "not_husky/deeper/one.png", "not_husky/no_suffix"]
    assert f"skipped {sets[0] / 'husky' / 'linked.jpg'}: a symbolic link, not followed" in lines[0]
    assert any(f"skipped {sets[0] / 'not_husky' / 'album'}: a symbolic link to a folder" in line for line in lines)
    assert [path.name for path, _ in photos.skipped] == ["linked.jpg"]
    with pytest.raises(DataError, match="distinct names"):
        scan_many(sets, report=lines.append)
    both = scan_many(sets, report=lines.append, same_names="full path")
    assert f"{sets[1].resolve()}/husky/deeper/one.png" in {both.name(s) for s in both.samples}
    assert photos.name(photos.samples[0]) == "photos/husky/deeper/one.png"


def test_32_bit_images_are_scaled_alike_in_every_strip():
    """Large images are converted strip by strip; 0-65535 samples must not become 0-255 in a strip
    that happens to hold only small values."""
    samples = np.full((1024, 2048), 60000, dtype=np.int32)
    samples[:512] = 200  # the first strip (512 rows of 2048) holds only small values
    img = np.asarray(load_image(Image.fromarray(samples, "I")))
    assert img[0, 0, 0] == int(200 * 255 / 65535 + 0.5) and img[-1, 0, 0] == int(60000 * 255 / 65535 + 0.5)


# ---------------------------------------------------------------------------------------------
# Bounded decoding: the bombs are refused before decoding, and what is decoded is decoded small.


@pytest.fixture
def pillow_spy(monkeypatch):
    """Records every Image.open and ImageFile.load that reaches Pillow (they still run)."""
    calls = []
    real_open, real_load = Image.open, ImageFile.ImageFile.load

    def spy_open(*args, **kwargs):
        calls.append("open")
        return real_open(*args, **kwargs)

    def spy_load(self):
        if self.tile:  # pixels still to decode
            calls.append(f"load {self.format} {self.size[0]}x{self.size[1]}")
        return real_load(self)

    monkeypatch.setattr(Image, "open", spy_open)
    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    return calls


BOMBS = {
    # name: (file, the refusal a person reads)
    "RLE8 BMP 4000000x16": (lambda: rle_bmp(4_000_000, 16), "RLE8-compressed BMP is not accepted"),
    "RLE4 BMP": (lambda: rle_bmp(640, 480, rle4=True), "RLE4-compressed BMP is not accepted"),
    "PNG 4000000x16": (lambda: png_solid(4_000_000, 16, rows=2), "image is 4000000x16 pixels, the longest side"),
    "PNG 20000x20000": (lambda: png_solid(20000, 20000, rows=2), "image is 20000x20000 pixels, the limit is 64"),
    "PNG 12000x1000": (lambda: png_solid(12000, 1000, rows=2), "more than 10 times as long as it is wide"),
    "PNG 16-bit RGBA 48 MP": (lambda: png_solid(8000, 6000, 16, 6, rows=2), "too large to decode safely as a "
                                                                             "16-bit RGBA PNG"),
    "PNG RGB 64 MP": (lambda: png_solid(8000, 8000, 8, 2, rows=2), "too large to decode safely as a 8-bit RGB PNG"),
    "PNG chunk flood": (lambda: png_solid(64, 64)[:33] + png_chunk(b"abCd", b"") * 300 + png_solid(64, 64)[33:],
                        "more than 256 chunks"),
    "GIF 65535x65535": (lambda: _gif_with_size(65535, 65535), "image is 65535x65535 pixels"),
    "GIF comment flood": (lambda: gif_frames((32, 32), 1, comment=1_000_000), "too much extension data"),
    "JPEG 65500x65500": (lambda: jpeg_with_size(65500, 65500), "image is 65500x65500 pixels"),
    "JPEG scan flood": (lambda: jpeg_scan_flood((1000, 1000), 70), "more than 64 scans"),
    "JPEG scan blocks": (lambda: jpeg_scan_flood((6000, 6000), 40), "million blocks of 8x8 pixels"),
    "JPEG EXIF directory": (lambda: jpeg_with_segments([(0xE1, b"Exif\0\0" + tiff_directory(4000, 60000))]),
                            "EXIF data has 4000 entries"),
    "JPEG EXIF segments": (lambda: jpeg_with_segments([(0xE1, b"Exif\0\0" + tiff_directory(0, 0))] * 20),
                           "more than 8 EXIF segments"),
    "JPEG MPF directory": (lambda: jpeg_with_segments([(0xE2, b"MPF\0" + tiff_directory(100, 60000))]),
                           "MPF data is malformed"),
    # LONG8 (type 16) entries, which Pillow reads too: 256 of them held 135 MB for a 520 KB file
    "JPEG EXIF LONG8 directory": (lambda: jpeg_with_segments([(0xE1, b"Exif\0\0" + tiff_directory(256, 8000,
                                                                                                  typ=16))]),
                                  "EXIF data is malformed"),
    # Pillow unpacks each table in Python: a 10 MB file of them took 0.84 s, four times a 12 MP photo
    "JPEG quantization tables": (lambda: jpeg_with_segments([(0xDB, quant_tables(1000))] * 3),
                                 "more than 64 quantization tables"),
    # a first scan without every component makes libjpeg keep all coefficients, as for progressive
    "JPEG 48 MP 4:4:4, partial first scan": (lambda: jpeg_partial_first_scan(8000, 6000),
                                             "too large to decode safely as a baseline JPEG (3 components)"),
    "JPEG Photoshop blocks": (lambda: jpeg_with_segments([(0xED, b"Photoshop 3.0\0" + b"8BIM\4\4\0\0\0\0\0\0" * 400)]
                                                         * 3), "Photoshop resource blocks"),
    "JPEG comment flood": (lambda: jpeg_with_segments([(0xFE, b"")] * 600), "too many segments"),
    "JPEG fill bytes": (lambda: b"\xff\xd8" + b"\xff" * 5000 + jpeg_with_segments([])[2:], "padding or junk"),
    "JPEG escaped-FF junk": (lambda: b"\xff\xd8" + b"\xff\x00" * 2_000_000 + jpeg_with_segments([])[2:],
                             "padding or junk"),
    "JPEG standalone markers": (lambda: b"\xff\xd8" + b"\xff\x01" * 2_000_000 + jpeg_with_segments([])[2:],
                                "too many segments"),
    "GIF empty extensions": (lambda: (lambda g: g[:g.index(b"!")] + b"!\xfe\x00" * 3_000_000 + g[g.index(b"!"):])(
        gif_frames((32, 32), 1)), "too much extension data"),
    "JPEG progressive 4:4:4 48 MP": (lambda: jpeg_with_size(8000, 6000, True, subsampling=0),
                                     "too large to decode safely as a progressive JPEG (3 components)"),
    "WebP 16384x16384": (lambda: webp_with_size(16384, 16384), "image is 16384x16384 pixels"),
}


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_the_bombs_are_refused_before_decoding(bomb, pillow_spy):
    """Each of these once cost seconds or hundreds of MB inside Pillow (or would have); now the file's
    structure is read first and Pillow never opens it."""
    make, message = BOMBS[bomb]
    data = make()
    assert len(data) <= MAX_FILE_BYTES
    with pytest.raises(InvalidImageError, match=re.escape(message)) as info:
        load_image(data, "bomb.img")
    assert str(info.value).startswith("bomb.img: ")
    assert pillow_spy == [], f"Pillow was reached: {pillow_spy}"
    assert describe(data)["image_format"] in ("JPEG", "PNG", "GIF", "BMP", "WEBP")  # logging it is safe too
    assert pillow_spy == []


def test_refused_files_are_still_described_for_the_audit_log():
    assert describe(rle_bmp(4_000_000, 16)) == {"image_format": "BMP", "width": 4_000_000, "height": 16}
    assert describe(png_solid(20000, 20000, rows=1)) == {"image_format": "PNG", "width": 20000, "height": 20000}
    assert describe(jpeg_with_segments([(0xFE, b"")] * 600, size=(80, 60))) == \
        {"image_format": "JPEG", "width": 80, "height": 60}
    assert describe(b"not an image") == {"image_format": None, "width": None, "height": None}


def test_limits_leave_ordinary_and_large_photos_alone(pillow_spy):
    """A 48 MP phone-size baseline JPEG and panorama-shaped PNGs within the caps decode."""
    assert load_image(jpeg_with_segments([], image=Image.new("RGB", (8000, 6000), "grey"))).size == (1000, 750)
    assert load_image(png_solid(11000, 1100)).size == (11000, 1100)  # aspect 10, short side under 2x1152: kept
    assert pillow_spy.count("open") == 2


def test_large_jpegs_are_decoded_reduced_with_draft(pillow_spy):
    photo = skimage_photo("astronaut").resize((4800, 3600), Image.BICUBIC)  # 17 MP
    data = jpeg_bytes(photo)
    pillow_spy.clear()
    img = load_image(data)
    assert pillow_spy == ["open", "load JPEG 1200x900"]  # libjpeg decoded at 1/4: never 4800x3600
    assert img.size == (1200, 900)  # the shorter side stays at least twice the 288 px input
    # the same picture as a full decode reduced afterwards, within JPEG's own noise
    full = Image.open(io.BytesIO(data)).convert("RGB").reduce(4)
    diff = np.abs(np.asarray(img, np.int16) - np.asarray(full, np.int16))
    assert diff.mean() < 2.0, diff.mean()
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF rotation still applies to the reduced image
    assert load_image(jpeg_bytes(photo, exif=exif.tobytes())).size == (900, 1200)
    assert load_image(jpeg_bytes(photo.resize((2400, 1151)))).size == (2400, 1151)  # 1/2 would go under 576


def test_large_images_of_other_formats_are_reduced_by_a_box_filter():
    photo = skimage_photo("coffee").resize((2560, 2304), Image.BICUBIC)  # short side twice WORK_SIDE: factor 2
    img = load_image(encode(photo, "PNG", compress_level=1))  # zlib's fastest level: same pixels, 10x faster
    assert img.size == (1280, 1152)
    assert np.array_equal(np.asarray(img), np.asarray(photo.reduce(2)))
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    half = np.asarray(load_image(encode(rgba, "PNG", compress_level=1)), np.int16)  # composited on white, reduced
    expected = (np.asarray(photo.reduce(2), np.int16) + 255 + 1) // 2
    assert np.abs(half - expected).max() <= 2


def test_normal_photos_decode_exactly_as_before():
    """Below twice the working size (JPEG: twice JPEG_DRAFT_SIDE) nothing is reduced: Pillow's own decode."""
    for photo, fmt in ((skimage_photo("astronaut"), "JPEG"), (skimage_photo("coffee"), "PNG"),
                       (skimage_photo("chelsea").resize((1500, 1151)), "JPEG"),
                       (skimage_photo("rocket"), "WEBP")):
        data = encode(photo, fmt)
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert np.array_equal(np.asarray(load_image(data)), expected), fmt


def load_with_peak_memory(data: bytes):
    """load_image(data) and the peak of Python-level allocations while it ran."""
    tracemalloc.start()
    try:
        return load_image(data), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_16_bit_images_convert_to_their_high_byte_without_float_copies():
    ramp = (np.arange(256 * 64, dtype=np.uint32).reshape(64, 256) * 4).astype(np.uint16)  # 0..65532
    ramp[0, :4] = (0, 255, 32768, 65535)
    img = load_image(encode(Image.fromarray(ramp), "PNG"))
    assert np.array_equal(np.asarray(img)[:, :, 0], (ramp >> 8).astype(np.uint8))
    assert np.asarray(img)[0, :4, 1].tolist() == [0, 0, 128, 255]
    big_endian = Image.frombytes("I;16B", (256, 64), ramp.astype(">u2").tobytes())
    assert np.array_equal(np.asarray(load_image(big_endian))[:, :, 2], (ramp >> 8).astype(np.uint8))
    # a 64 MP 16-bit PNG (the 124 KB file that once took 1.6 GB through float64): Python allocates
    # no more than a strip, the image itself lives in Pillow's own memory
    img, peak = load_with_peak_memory(png_solid(8000, 8000, 16, 0))
    assert img.size == (1334, 1334)  # reduced by 6, strip by strip
    assert peak < 40e6, peak


def test_exif_orientation_is_read_with_bounded_work():
    """Pillow's getexif() reads every entry of the directory and the data each points to: 300 entries
    pointing at the same 500 KB would be 150 MB. The orientation reader looks at one entry."""
    exif = tiff_directory(300, 500_000, orientation=8, blob_size=500_000)  # PNG's eXIf has no "Exif" prefix
    img, peak = load_with_peak_memory(png_solid(200, 100, exif=exif))
    assert img.size == (100, 200)  # rotated
    assert peak < 20e6, peak


def test_first_frame_only_of_a_many_frame_gif(pillow_spy):
    data = gif_frames((400, 300), 3000)
    assert load_image(data).size == (400, 300)
    assert pillow_spy == ["open", "load GIF 400x300"]
