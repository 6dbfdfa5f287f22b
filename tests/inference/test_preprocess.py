"""huskyai.inference.preprocess, the one "photo -> model input": its arithmetic, its card fields, its refusals.
That fastai's validation path runs it is checked where fastai is (test_training.py, test_shipped_model.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import EXPORT, python_env, skimage_photo
from huskyai.inference.preprocess import Preprocessing, crop_box, crop_resize, normalise, to_unit


def test_the_shipped_card_reads_back_into_the_same_fields():
    card = json.loads((EXPORT / "model.json").read_text())
    prep = Preprocessing.from_card(card)
    assert prep.size == card["input_size"] and list(prep.mean) == card["normalization"]["mean"]
    assert {k: card[k] for k in ("input_size", "resize", "normalization")} == prep.card_fields()


def test_a_card_asking_for_another_resize_is_refused():
    card = json.loads((EXPORT / "model.json").read_text())
    card["resize"] = {"method": "squish", "resample": "bicubic"}
    with pytest.raises(ValueError, match="squish"):
        Preprocessing.from_card(card)


def test_the_largest_centred_square_is_kept():
    # a 300 x 100 image: left, middle and right thirds in three colours; only the middle survives
    arr = np.zeros((100, 300, 3), np.uint8)
    arr[:, :100], arr[:, 100:200], arr[:, 200:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    out = np.asarray(crop_resize(Image.fromarray(arr), 50))
    assert out.shape == (50, 50, 3) and (out == (0, 255, 0)).all()
    tall = np.asarray(crop_resize(Image.fromarray(arr.transpose(1, 0, 2).copy()), 20))
    assert (tall == (0, 255, 0)).all()
    assert crop_box((300, 100), 50) == (100, 0, 200, 100) and crop_box((97, 311), 288) == (0, 107, 97, 204)


def test_scaling_and_normalisation_are_the_cards():
    prep = Preprocessing(32, (0.25, 0.5, 0.75), (0.5, 0.25, 0.125))
    x = prep.array(np.full((40, 60, 3), 51, np.uint8))  # 51 / 255 = 0.2
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    expected = [(0.2 - 0.25) / 0.5, (0.2 - 0.5) / 0.25, (0.2 - 0.75) / 0.125]
    assert np.allclose(x, np.array(expected, np.float32)[:, None, None], atol=1e-5)
    assert np.allclose(prep.denormalise(x), 0.2, atol=1e-6)
    batch = prep.batch([skimage_photo("chelsea"), skimage_photo("coffee")])
    assert batch.shape == (2, 3, 32, 32) and np.array_equal(batch[0], prep.array(skimage_photo("chelsea")))


def test_the_in_place_path_is_to_unit_then_normalise_to_the_bit():
    """Serving scales and normalises in place; fastai runs to_unit's and normalise's arithmetic (in torch):
    both must give the same floats, not merely close ones."""
    prep = Preprocessing(288, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    rng = np.random.default_rng(1)
    photos = [skimage_photo(n) for n in ("chelsea", "coffee")] + [rng.integers(0, 256, (300, 500, 3), np.uint8)]
    for photo in photos:
        reference = normalise(to_unit(prep.crop_resize(photo)), prep.mean_array, prep.std_array)
        out = np.full((3, 288, 288), np.nan, np.float32)
        assert prep.array(photo, out) is out and np.array_equal(out, reference)
        assert np.array_equal(prep.array(photo), reference)
    every_value = np.repeat(np.arange(256, dtype=np.uint8), 3).reshape(16, 16, 3)
    assert np.array_equal(prep.to_input(every_value), normalise(to_unit(every_value), prep.mean_array, prep.std_array))
    assert np.array_equal(prep.batch(photos), np.stack([prep.array(p) for p in photos]))


def test_the_predictor_prepares_photos_with_it(shipped):
    photo = skimage_photo("astronaut")
    assert shipped.preprocessing == Preprocessing.from_card(shipped.card)
    assert np.array_equal(shipped.preprocess(photo), shipped.preprocessing.array(photo))


@pytest.mark.parametrize("bad,message", [
    (Image.new("L", (10, 10)), "decoded RGB image, got L"),
    (np.zeros((10, 10), np.uint8), "HxWx3 uint8"),
    (np.zeros((10, 10, 3), np.float32), "HxWx3 uint8"),
    ("photo.jpg", "decoded RGB image, got str"),
])
def test_undecoded_or_odd_input_gets_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        Preprocessing(16, (0.5,) * 3, (0.5,) * 3).array(bad)


def test_bad_numbers_are_refused():
    with pytest.raises(ValueError, match="one value per RGB channel"):
        Preprocessing(16, (0.5, 0.5), (0.5,) * 3)
    with pytest.raises(ValueError, match="bad preprocessing"):
        Preprocessing(16, (0.5,) * 3, (0.5, 0.0, 0.5))


def test_it_imports_neither_torch_nor_fastai():
    code = ("import sys, huskyai.inference.preprocess; "
            "print(sorted({k.split('.')[0] for k in sys.modules} & {'torch', 'fastai', 'timm'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=python_env(),
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"
