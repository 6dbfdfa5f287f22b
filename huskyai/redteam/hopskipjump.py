"""Label-only evasion: ART's HopSkipJump (Chen et al. 2020), a decision-based attack that sees only the
victim's label, through any huskyai.redteam.oracle victim (the Python predictor, or a running app set to
HUSKYAI_API_DETAIL=label). Every query is an 8-bit image, as an upload would be.

The result of a photo is the closest image (L-infinity) the victim itself labelled otherwise among all
the queries, not ART's last point: ART's step-size search halves its step until the victim agrees, and
when 8-bit rounding makes its current point answer the original label, it halves forever. So each photo
also has a query ``budget``; a success is a confirmed flip within ``eps`` (plus half a grey level).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from huskyai.settings import DEFAULT_RATE_LIMIT


class _BudgetSpent(Exception):
    pass


class _Tracker:
    """The photo under attack, its label, the queries left and the closest flipped query so far."""

    def start(self, image: np.ndarray, label: str, budget: int) -> None:
        self.image, self.label, self.left, self.best = image.astype(int), label, budget, np.inf

    def see(self, image8: np.ndarray, label: str) -> None:
        self.left -= 1
        if label != self.label:
            self.best = min(self.best, float(np.abs(image8.astype(int) - self.image).max()))


def _label_only_classifier(victim, shape: tuple[int, ...], tracker: _Tracker):
    """ART's BlackBoxClassifier over the victim: one-hot of its label for each image (HWC floats in [0, 1])."""
    from art.estimators.classification import BlackBoxClassifier

    def predict(x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), len(victim.classes)), np.float32)
        for i, im in enumerate(x):
            if tracker.left <= 0:
                raise _BudgetSpent
            im8 = (np.clip(im, 0, 1) * 255 + 0.5).astype(np.uint8)
            label = victim.predict(im8).label
            tracker.see(im8, label)
            out[i, victim.classes.index(label)] = 1
        return out

    return BlackBoxClassifier(predict, input_shape=shape, nb_classes=len(victim.classes), clip_values=(0, 1))


def hopskipjump_attack(victim, images: Sequence[np.ndarray], eps: float = 8 / 255, max_iter: int = 10,
                       max_eval: int = 200, init_eval: int = 20, rate_limit: int = DEFAULT_RATE_LIMIT,
                       starts: Sequence[np.ndarray | None] | None = None, budget: int = 1000) -> dict:
    """Untargeted label-only attack on HxWx3 uint8 images (the victim's input); success and queries.

    ``starts``: for each image, one the victim labels otherwise (say a photo of the other class) to walk
    back from; None, or no start, lets ART try random noise, which the victim may call the same
    (noise is "not husky"), and then the attack never starts."""
    try:
        from art.attacks.evasion import HopSkipJump
    except ImportError:
        raise RuntimeError('hopskipjump needs ART: pip install "adversarial-robustness-toolbox>=1.20,<1.21"') from None

    tracker = _Tracker()
    attack = HopSkipJump(_label_only_classifier(victim, images[0].shape, tracker), targeted=False, norm=np.inf,
                         max_iter=max_iter, max_eval=max_eval, init_eval=init_eval, init_size=20, verbose=False)
    runs, started = [], time.perf_counter()
    for i, (image, start) in enumerate(zip(images, starts or [None] * len(images))):
        np.random.seed(i)  # ART draws its random starts from numpy's global generator
        before, label = victim.queries, victim.predict(image).label
        tracker.start(image, label, budget)
        init = {} if start is None else {"x_adv_init": start.astype(np.float32)[None] / 255}
        try:
            attack.generate(image.astype(np.float32)[None] / 255, **init)
        except _BudgetSpent:
            pass
        fooled = bool(np.isfinite(tracker.best))
        runs.append({"label": label, "start": "random" if start is None else "photo", "fooled": fooled,
                     "linf": tracker.best if fooled else None, "success": tracker.best <= eps * 255 + 0.5,
                     "queries": victim.queries - before, "budget_spent": tracker.left <= 0})
    queries = [r["queries"] for r in runs]
    return {"n": len(runs), "eps": round(eps * 255), "max_iter": max_iter, "budget": budget,
            "success_rate": float(np.mean([r["success"] for r in runs])), "median_queries": float(np.median(queries)),
            "minutes_per_photo_at_rate_limit": float(np.median(queries)) / rate_limit if rate_limit else None,
            "seconds_per_query": (time.perf_counter() - started) / max(1, sum(queries)),  # with no rate limit
            "runs": runs}
