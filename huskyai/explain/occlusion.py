"""Occlusion maps on the serving engine (ONNX Runtime): no torch, no gradients, only predictions.

A grey square (the normalisation's mean: zero in the network's input) slides over the input; each
position costs one prediction, in batches. A pixel's score is the mean drop in P(positive class) over the
positions that covered it; rises count as zero; the map is divided by its maximum (all zero when no
patch moves P(positive) by 0.001). The cost is fixed:
the patch is 1/6 of the side and moves by half a patch, so a map costs about 11 x 11 predictions at any
input size (121 at 288 px, 144 at 224 px; plus one for the unmasked photo).
"""

from __future__ import annotations

import numpy as np

PATCH_FRACTION = 1 / 6
BATCH_SIZE = 16
# drops smaller than this are numerical noise: on a sure non-husky (P 0.000) they would otherwise be
# scaled up to a map full of red patches
NOISE_FLOOR = 1e-3


def patch_starts(size: int, patch: int, stride: int) -> list[int]:
    """Where the patch starts along one side: every ``stride`` pixels, the last one flush with the edge."""
    starts = list(range(0, size - patch + 1, stride))
    return starts if starts[-1] == size - patch else starts + [size - patch]


def occlusion_map(model, x: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """The occlusion map of the preprocessed CHW input ``x`` for ``model`` (a Predictor): float32 in [0, 1]
    at the input's size, all zero when no patch lowers P(positive class)."""
    size = x.shape[-1]
    patch = max(1, round(size * PATCH_FRACTION))
    starts = patch_starts(size, patch, max(1, patch // 2))
    corners = [(top, left) for top in starts for left in starts]
    positive = model.classes.index(model.positive)
    baseline = float(model.probabilities(x[None])[0, positive])
    drop = np.zeros((size, size), np.float64)
    covered = np.zeros((size, size), np.float64)
    for i in range(0, len(corners), batch_size):
        chunk = corners[i:i + batch_size]
        batch = np.repeat(x[None], len(chunk), axis=0)
        for k, (top, left) in enumerate(chunk):
            batch[k, :, top:top + patch, left:left + patch] = 0.0  # the mean colour, after normalisation
        probs = model.probabilities(batch)[:, positive]
        for (top, left), p in zip(chunk, probs):
            drop[top:top + patch, left:left + patch] += baseline - float(p)
            covered[top:top + patch, left:left + patch] += 1
    heat = np.clip(drop / covered, 0.0, None)
    peak = heat.max()
    if peak < NOISE_FLOOR:
        return np.zeros_like(heat, dtype=np.float32)
    return (heat / peak).astype(np.float32)
