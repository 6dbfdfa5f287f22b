"""Black-box attack: what an outsider with only the API's probability can do.

Random search with square patches under L-infinity (the idea of Square Attack, Andriushchenko et
al. 2020): each query proposes a random square of +-eps and keeps it if the margin
log p(true) - log p(best other) falls (the margin still moves when p(true) has rounded to 1.0).
The attacked images are 8-bit and at the model's input size, i.e. something one could upload;
every query is one model.predict.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from huskyai.settings import DEFAULT_RATE_LIMIT


def square_attack(predictor, image: np.ndarray, true_label: str, eps: float = 8 / 255, budget: int = 300,
                  seed: int = 0) -> dict:
    """Untargeted attack on one HxWx3 uint8 image; returns success, queries used and the result."""
    rng = np.random.default_rng(seed)
    x = image.astype(np.float32) / 255
    h, w, _ = x.shape
    e = max(1, round(eps * 255)) / 255

    def margin(candidate: np.ndarray) -> tuple[float, float, str]:
        pred = predictor.predict((np.clip(candidate, 0, 1) * 255 + 0.5).astype(np.uint8))
        other = max(p for c, p in pred.scores.items() if c != true_label)
        p = pred.scores[true_label]
        return float(np.log(p + 1e-30) - np.log(other + 1e-30)), p, pred.label

    # start from vertical stripes of +-eps, as Square Attack does, or from the photo if that is closer
    adv = np.clip(x + e * rng.choice([-1, 1], size=(1, w, 3)), 0, 1)
    best_margin, best, label = margin(adv)
    clean_margin, clean_p, clean_label = margin(x)
    if clean_margin < best_margin:
        adv, best_margin, best, label = x.copy(), clean_margin, clean_p, clean_label
    queries = 2
    while queries < budget and label == true_label:
        side = max(2, int(round(np.sqrt(0.1 * h * w * (1 - queries / budget) ** 2 + 4))))
        r, c = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        candidate = adv.copy()
        candidate[r:r + side, c:c + side] = x[r:r + side, c:c + side] + e * rng.choice([-1, 1], size=(1, 1, 3))
        candidate = np.clip(np.clip(candidate, x - e, x + e), 0, 1)
        cand_margin, p, cand_label = margin(candidate)
        queries += 1
        if cand_margin < best_margin:
            adv, best_margin, best, label = candidate, cand_margin, p, cand_label
    return {"success": label != true_label, "queries": queries, "final_true_probability": best,
            "final_margin": best_margin,
            "adversarial": (adv * 255 + 0.5).astype(np.uint8)}


def query_attack(predictor, photos: Sequence, labels: Sequence[str], eps: float = 8 / 255, budget: int = 300,
                 rate_limit_per_minute: int = DEFAULT_RATE_LIMIT) -> dict:
    """Success rate and median queries over ``photos``, and what the app's rate limit makes of it."""
    from huskyai.images.decode import load_image

    runs = []
    for i, (photo, label) in enumerate(zip(photos, labels)):
        img = np.asarray(predictor.preprocessing.crop_resize(load_image(photo)))  # what the model sees, 8-bit
        runs.append(square_attack(predictor, img, label, eps, budget, seed=i) | {"label": label})
    successes = [r for r in runs if r["success"]]
    median_q = float(np.median([r["queries"] for r in successes])) if successes else None
    total_queries = sum(r["queries"] for r in runs)
    return {
        "n": len(runs), "eps": round(eps * 255), "budget": budget,
        "success_rate": len(successes) / len(runs) if runs else 0.0,
        "median_queries": median_q,
        "total_queries": total_queries,
        "rate_limit_per_minute": rate_limit_per_minute,
        "minutes_per_success_one_client": (median_q / rate_limit_per_minute) if median_q and rate_limit_per_minute
        else None,
        "minutes_for_all_one_client": total_queries / rate_limit_per_minute if rate_limit_per_minute else None,
        "_runs": runs,
    }
