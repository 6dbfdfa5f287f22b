"""A fast slice of the image fuzzer (``python tests/images/fuzz_images.py N`` runs as many as asked)."""

from __future__ import annotations

from fuzz_images import _bmp_with_size, _gif_with_size, _png_with_size, check, hostile_image, malformed_image, rle_bmp
from hypothesis import HealthCheck, given, settings

import huskyai

MODEL = None


def model():
    global MODEL
    MODEL = MODEL or huskyai.load()
    return MODEL


@settings(max_examples=250, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(malformed_image())
def test_malformed_images_get_a_prediction_or_the_documented_error(data):
    check(model(), data)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(hostile_image())
def test_hostile_shapes_get_a_prediction_or_the_documented_error(data):
    """RLE BMP, extreme aspect, big 16-bit/RGBA/palette PNGs, many-frame GIFs, scan and segment floods."""
    check(model(), data)


def test_huge_dimensions_in_small_files_are_refused():
    for make in (_png_with_size, _gif_with_size, _bmp_with_size, rle_bmp):
        assert check(model(), make(60000, 60000)) == "refused"
