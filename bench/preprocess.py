"""Preprocessing cost, before and after, in one run: python bench/preprocess.py [--rounds 3]

Steps of model.preprocess on the example photo: decode, crop and resize, then scaling and normalising
three ways: as before (to_unit then normalise, each making new arrays), as now (Preprocessing.to_input,
the same operations in place: equal to the bit), and a fused multiply-add (x * a + b, not adopted: not
equal to the bit, so fastai's test_dl would no longer give the very same array).
Then JPEG draft sizes on a 4000x3000 JPEG (a photo upscaled: real fine detail would differ more), decoded,
cropped and resized: as before (draft to WORK_SIDE, libjpeg at 1/2), as now (load_image: draft to
JPEG_DRAFT_SIDE, twice the input, 1/4), to the input size (1/8) and in full, with each result's distance
from the full decode (bench/decode.py --quality compares predictions on 22 photos).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics

import numpy as np
from PIL import Image

import huskyai
from common import PHOTO, median_ms
from huskyai.images.decode import WORK_SIDE, load_image
from huskyai.inference.preprocess import normalise, to_unit


def float_steps(prep, small: Image.Image) -> dict:
    a = 1 / (255 * np.array(prep.std, np.float32)).reshape(3, 1, 1)
    b = (-np.array(prep.mean, np.float32) / np.array(prep.std, np.float32)).reshape(3, 1, 1)
    pixels = np.asarray(small)
    return {"before: to_unit, normalise": lambda: normalise(to_unit(small), prep.mean_array, prep.std_array),
            "now: to_input (in place)": lambda: prep.to_input(pixels),
            "multiply-add (not adopted)": lambda: np.asarray(small, np.float32).transpose(2, 0, 1) * a + b}


def large_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.open(PHOTO).convert("RGB").resize((4000, 3000), Image.LANCZOS).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def drafted(data: bytes, side: int | None) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    if side:
        img.draft("RGB", (side, side))
    return img.convert("RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model = huskyai.load()
    prep, data, big = model.preprocessing, PHOTO.read_bytes(), large_jpeg()
    img = load_image(data)
    small = prep.crop_resize(img)
    steps = {"decode (huskyai.images)": lambda: load_image(data), "crop and resize": lambda: prep.crop_resize(img)}
    steps |= float_steps(prep, small)
    steps["model.preprocess, all of it"] = lambda: model.preprocess(data)
    drafts = {"12 MP: before, draft to 1152 (1/2)": WORK_SIDE, "12 MP: now, load_image (1/4)": None,
              "12 MP: draft to input (1/8)": prep.size, "12 MP: full decode": 0}
    for name, side in drafts.items():
        steps[name] = (lambda: prep.crop_resize(load_image(big))) if side is None else \
            (lambda s=side: prep.crop_resize(drafted(big, s)))
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            times[name].append(median_ms(fn, repeat=5 if name.startswith("12 MP") else 40))
    print(f"photo {PHOTO.name} {img.size[0]}x{img.size[1]}, input {prep.size} px; load average "
          f"{os.getloadavg()[0]:.2f}; median of {args.rounds} rounds")
    for name, t in times.items():
        print(f"  {name:34s} {statistics.median(t):8.2f} ms")
    exact = steps["before: to_unit, normalise"]()
    print(f"to_input equal to the bit: {np.array_equal(steps['now: to_input (in place)'](), exact)}; multiply-add "
          f"differs by up to {np.abs(steps['multiply-add (not adopted)']() - exact).max():.1e}")
    full = prep.to_input(np.asarray(prep.crop_resize(drafted(big, 0))))
    p_full = model.probabilities(full[None])[0]
    for name, side in list(drafts.items())[:3]:
        small_big = prep.crop_resize(load_image(big) if side is None else drafted(big, side))
        x = prep.to_input(np.asarray(small_big))
        grey = np.abs(x - full).max() * max(prep.std) * 255
        dp = np.abs(model.probabilities(x[None])[0] - p_full).max()
        print(f"  {name:34s} against the full decode: up to {grey:.1f} grey levels, |dp| {dp:.1e}")


if __name__ == "__main__":
    main()
