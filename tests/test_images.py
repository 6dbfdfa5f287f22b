"""The untrusted-image decoder: odd but valid images decode right, bad ones get a clear error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import bad_files, jpeg_bytes, skimage_photo
from huskyai.images import InvalidImageError, load_image


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
