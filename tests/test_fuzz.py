"""A fast slice of the image fuzzer (tests/fuzz_images.py runs the full 2,000)."""

from __future__ import annotations

from fuzz_images import _bmp_with_size, _gif_with_size, _png_with_size, check, malformed_image
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


def test_huge_dimensions_in_small_files_are_refused():
    for make in (_png_with_size, _gif_with_size, _bmp_with_size):
        assert check(model(), make(60000, 60000)) == "refused"
