"""Image-scaling attack: a large image that a naive nearest-neighbour downscale turns into another.

The attacker writes the hidden image into exactly the pixels a nearest-neighbour resize samples
(one in factor^2) and leaves the rest as the innocent cover. A person sees the cover; a pipeline
that downsizes naively sees the hidden image. Husky AI's preprocessing (Pillow's bilinear resize,
which filters over every source pixel when shrinking) sees the cover.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def craft(cover: Image.Image, hidden: Image.Image, size: int = 224, factor: int = 4) -> Image.Image:
    """A (size*factor)^2 image that looks like ``cover`` and NEAREST-downscales to ``hidden``."""
    big = size * factor
    out = np.asarray(cover.convert("RGB").resize((big, big), Image.BICUBIC)).copy()
    target = np.asarray(hidden.convert("RGB").resize((size, size), Image.BICUBIC))
    # Pillow's NEAREST samples source pixel floor((i + 0.5) * factor) for output pixel i
    idx = np.floor((np.arange(size) + 0.5) * factor).astype(int)
    out[np.ix_(idx, idx)] = target
    return Image.fromarray(out)


def naive_downscale(img: Image.Image, size: int) -> Image.Image:
    return img.resize((size, size), Image.NEAREST)


def scaling_attack(predictor, cover: Image.Image, hidden: Image.Image, factor: int = 4) -> dict:
    size = predictor.size
    attack = craft(cover, hidden, size, factor)
    naive = naive_downscale(attack, size)
    ours = predictor.preprocessing.crop_resize(attack)  # huskyai.inference.preprocess, as every prediction
    cover_small = np.asarray(cover.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32)
    hidden_small = np.asarray(hidden.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float32)

    def mae(a, b) -> float:
        return float(np.abs(np.asarray(a, dtype=np.float32) - b).mean())

    naive_pred = predictor.predict(naive)
    ours_pred = predictor.predict(attack)
    return {
        "factor": factor, "attack_size": attack.size[0],
        "naive_vs_hidden_mae": mae(naive, hidden_small), "naive_vs_cover_mae": mae(naive, cover_small),
        "huskyai_vs_hidden_mae": mae(ours, hidden_small), "huskyai_vs_cover_mae": mae(ours, cover_small),
        "attack_vs_cover_mae": mae(attack.resize((size, size), Image.BILINEAR), cover_small),
        "naive_prediction": {"label": naive_pred.label, "probability": naive_pred.positive_probability},
        "huskyai_prediction": {"label": ours_pred.label, "probability": ours_pred.positive_probability},
        "_images": {"attack": attack, "naive": naive, "huskyai": ours},
    }
