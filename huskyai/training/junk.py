"""Junk images: white, black, solid colours, noise, gradients, stripes, checkerboards, blurred noise.

The original Husky AI called a plain white image a husky. Training can add these as negatives
(``train --junk N``) and the red-team kit measures how many the model calls positive: both use this
one generator, which sits below both.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

KINDS = ("white", "black", "solid", "uniform_noise", "gaussian_noise", "gradient", "stripes", "checkerboard",
         "blurred_noise")


def junk_image(kind: str, rng: np.random.Generator, size: int = 256) -> Image.Image:
    """One generated image of ``kind``, its colours and scales drawn from ``rng``."""
    if kind == "white":
        return Image.new("RGB", (size, size), (255, 255, 255))
    if kind == "black":
        return Image.new("RGB", (size, size), (0, 0, 0))
    if kind == "solid":
        return Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
    if kind == "uniform_noise":
        return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    if kind == "gaussian_noise":
        mean, sd = rng.uniform(40, 215), rng.uniform(10, 80)
        return Image.fromarray(np.clip(rng.normal(mean, sd, (size, size, 3)), 0, 255).astype(np.uint8))
    if kind == "gradient":
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, size)[:, None, None]
        line = (a * (1 - t) + b * t).astype(np.uint8)
        arr = np.broadcast_to(line, (size, size, 3)) if rng.random() < 0.5 else np.broadcast_to(
            line.transpose(1, 0, 2), (size, size, 3))
        return Image.fromarray(np.ascontiguousarray(arr))
    if kind == "stripes":
        period = int(rng.integers(4, 64))
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        on = (np.arange(size) // period) % 2 == 0
        arr = np.where(on[:, None, None] if rng.random() < 0.5 else on[None, :, None], a, b)
        return Image.fromarray(np.broadcast_to(arr, (size, size, 3)).astype(np.uint8))
    if kind == "checkerboard":
        period = int(rng.integers(4, 64))
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        idx = np.arange(size) // period
        on = (idx[:, None] + idx[None, :]) % 2 == 0
        return Image.fromarray(np.where(on[..., None], a, b).astype(np.uint8))
    if kind == "blurred_noise":
        noise = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        return noise.filter(ImageFilter.GaussianBlur(float(rng.uniform(2, 12))))
    raise ValueError(f"unknown junk kind {kind!r}; choose from {', '.join(KINDS)}")


def junk_images(n: int, seed: int = 0, size: int = 256) -> list[tuple[str, Image.Image]]:
    """``n`` junk images cycling through every kind: (kind, image)."""
    rng = np.random.default_rng(seed)
    return [(KINDS[i % len(KINDS)], junk_image(KINDS[i % len(KINDS)], rng, size)) for i in range(n)]
