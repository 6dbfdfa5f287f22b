"""Label-only evasion: ART's HopSkipJump (Chen et al. 2020), a decision-based attack that sees only the
victim's label, through any huskyai.redteam.oracle victim (the Python predictor, or a running app set to
HUSKYAI_API_DETAIL=label). Every query is an 8-bit image, as an upload would be.

HopSkipJump minimises the L-infinity distance rather than keeping to a budget, so a photo counts as a
success when the victim's label changed and the distance is at most ``eps`` (plus half a grey level of
rounding).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ..serving import DEFAULT_RATE_LIMIT


def _label_only_classifier(victim, shape: tuple[int, ...]):
    """ART's BlackBoxClassifier over the victim: one-hot of its label for each image (HWC floats in [0, 1])."""
    from art.estimators.classification import BlackBoxClassifier

    def predict(x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), len(victim.classes)), np.float32)
        for i, im in enumerate(x):
            label = victim.predict((np.clip(im, 0, 1) * 255 + 0.5).astype(np.uint8)).label
            out[i, victim.classes.index(label)] = 1
        return out

    return BlackBoxClassifier(predict, input_shape=shape, nb_classes=len(victim.classes), clip_values=(0, 1))


def hopskipjump_attack(victim, images: Sequence[np.ndarray], eps: float = 8 / 255, max_iter: int = 10,
                       max_eval: int = 200, init_eval: int = 20, rate_limit: int = DEFAULT_RATE_LIMIT,
                       starts: Sequence[np.ndarray | None] | None = None) -> dict:
    """Untargeted label-only attack on HxWx3 uint8 images (the victim's input); success and queries.

    ``starts``: for each image, one the victim labels otherwise (say a photo of the other class) to walk
    back from; None, or no start, lets ART try random noise, which the victim may call the same
    (noise is "not husky"), and then the attack never starts."""
    try:
        from art.attacks.evasion import HopSkipJump
    except ImportError:
        raise RuntimeError('hopskipjump needs ART: pip install "adversarial-robustness-toolbox>=1.20,<1.21"') from None

    attack = HopSkipJump(_label_only_classifier(victim, images[0].shape), targeted=False, norm=np.inf,
                         max_iter=max_iter, max_eval=max_eval, init_eval=init_eval, init_size=20, verbose=False)
    runs, started = [], time.perf_counter()
    for i, (image, start) in enumerate(zip(images, starts or [None] * len(images))):
        np.random.seed(i)  # ART draws its random starts from numpy's global generator
        x = image.astype(np.float32)[None] / 255
        before, label = victim.queries, victim.predict(image).label
        init = {} if start is None else {"x_adv_init": start.astype(np.float32)[None] / 255}
        adv8 = (np.clip(attack.generate(x, **init)[0], 0, 1) * 255 + 0.5).astype(np.uint8)
        distance = float(np.abs(adv8.astype(int) - image.astype(int)).max()) / 255
        fooled = victim.predict(adv8).label != label
        runs.append({"label": label, "start": "random" if start is None else "photo", "fooled": fooled,
                     "linf": round(distance * 255, 1),
                     "success": fooled and distance <= eps + 0.5 / 255, "queries": victim.queries - before})
    queries = [r["queries"] for r in runs]
    return {"n": len(runs), "eps": round(eps * 255), "max_iter": max_iter, "success_rate": float(np.mean(
        [r["success"] for r in runs])), "median_queries": float(np.median(queries)),
        "minutes_per_photo_at_rate_limit": float(np.median(queries)) / rate_limit if rate_limit else None,
        "seconds_per_query": (time.perf_counter() - started) / max(1, sum(queries)),  # with no rate limit
        "runs": runs}
