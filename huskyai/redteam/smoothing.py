"""Randomized smoothing under attack: what a noise-trained model's certificates prove, and what white-box attacks
that know about the noise achieve against it, beside the fast model under the same attacks.

Everything lives in one space, the one the certificate is stated in (huskyai.inference.certify): the photo as
the model sees it, the centre crop resized to the card's input size, as pixels in [0, 1], 3 x size x size values.
An L2 radius is the Euclidean norm of a change there; the attacks change those float pixels directly, a
stronger attacker than one who must send an 8-bit photo.

- **Certified accuracy at radius r:** the share of photos for which CERTIFY (``certify_votes``) returns the
  true label with a radius of at least r; an abstention counts as wrong. At r = 0 it is the smoothed
  classifier's clean accuracy as CERTIFY answers (abstentions reported apart). This is a lower bound that
  holds against every attack inside the radius, with probability 1 - alpha per photo over the noise drawn.
- **Empirical accuracy under attack:** projected gradient ascent (huskyai.redteam.whitebox.pgd, L2 and
  L-infinity) on the smoothed classifier itself, through its noise: each step follows the gradient of the
  margin of log E[softmax(f(x + noise))], estimated with ``draws`` fresh Gaussian draws per step (expectation
  over transformation, as SmoothAdv: Salman et al., 2019). The attacked pixels are then judged by CERTIFY with
  ``judge_n`` samples; abstaining counts as wrong. This is an upper bound on the smoothed model's robust
  accuracy (a stronger attack may find more), and it must never fall below the certified accuracy at the same
  radius (up to the Monte Carlo's alpha and the sampling of photos).
- **The fast model:** the same PGD, plain (no noise), on its network, judged by its own decision.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from huskyai.inference.certify import (
    ABSTAIN,
    DEFAULT_ALPHA,
    DEFAULT_BATCH,
    DEFAULT_N,
    DEFAULT_N0,
    Certificate,
    base_classifier,
    card_sigma,
    certify,
    certify_votes,
    decided_classes,
    photo_pixels,
)
from huskyai.inference.predictor import Predictor
from huskyai.redteam.whitebox import EPSILONS, PixelModel, pgd

if TYPE_CHECKING:
    import torch

RADII = (0.0, 0.25, 0.5, 1.0)  # where certified accuracy is reported (L2, pixels in [0, 1])
L2_RADII = (0.25, 0.5, 1.0)  # where the L2 attacks run
DRAWS = 4  # noise draws per PGD step (Salman et al. try 1 to 8; each draw is a backward pass per photo and step)
JUDGE_N = 100  # CERTIFY's samples when judging an attacked photo: a modest n, so abstentions are more common


class SmoothedLogits:
    """The smoothed classifier's soft scores as ``logits(pixels)``: log of the mean softmax of the network over
    ``draws`` fresh Gaussian draws of ``sigma`` (unclipped, as certify adds them) for every call. Its gradient
    is the expectation-over-noise gradient that SmoothAdv climbs; :func:`huskyai.redteam.whitebox.pgd`
    attacks it like any model."""

    def __init__(self, model: PixelModel, sigma: float, draws: int = DRAWS, seed: int = 0):
        import torch

        if draws < 1:
            raise ValueError(f"draws must be at least 1, got {draws}")
        self.model, self.sigma, self.draws = model, float(sigma), int(draws)
        self.gen = torch.Generator().manual_seed(seed)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        noise = torch.randn((self.draws, *x.shape), generator=self.gen) * self.sigma
        noisy = (x[None] + noise).flatten(0, 1)  # draw-major: rows d * len(x) + i
        logp = torch.log_softmax(self.model.logits(noisy), 1).reshape(self.draws, len(x), -1)
        return torch.logsumexp(logp, 0) - math.log(self.draws)


def certify_at(model: Predictor, pixels: np.ndarray, sigma: float, n: int, n0: int = DEFAULT_N0,
               alpha: float = DEFAULT_ALPHA, batch_size: int = DEFAULT_BATCH, seed: int = 0) -> Certificate:
    """CERTIFY at ``pixels`` (CHW float32 in [0, 1], the model's input size) with the model's own decision as
    the base classifier: huskyai.inference.certify's procedure, on pixels an attack made rather than a photo."""
    return certify_votes(base_classifier(model), np.ascontiguousarray(pixels, np.float32), sigma, model.classes,
                         n0=n0, n=n, alpha=alpha, batch_size=batch_size, rng=np.random.default_rng(seed),
                         positive=model.positive)


def _share(hits: Sequence[bool]) -> float | None:
    return float(np.mean(hits)) if len(hits) else None


def _by_class(hits: Sequence[bool], labels: Sequence[str], classes: Sequence[str]) -> dict:
    """The share of ``hits`` overall ("all") and within each class, None where a class has no photo."""
    return {"all": _share(hits), **{c: _share([h for h, lab in zip(hits, labels) if lab == c]) for c in classes}}


def implied_linf(radius: float, size: int) -> float:
    """The largest L-infinity change (pixels in [0, 1]) an L2 radius covers at this input size: every change within
    eps per value has an L2 norm of at most eps * sqrt(3 * size * size)."""
    return radius / math.sqrt(3 * size * size)


def certified_accuracy(model: Predictor, photos: Sequence[Path], labels: Sequence[str], n: int = DEFAULT_N,
                       n0: int = DEFAULT_N0, alpha: float = DEFAULT_ALPHA, radii: Sequence[float] = RADII,
                       batch_size: int = DEFAULT_BATCH, seed: int = 0) -> dict:
    """CERTIFY on each labelled photo (its seed: ``seed`` + its index): certified accuracy at each radius, the
    smoothed classifier's clean accuracy and abstention rate, each overall and per class, and every answer."""
    sigma = card_sigma(model.card)
    rows, start = [], time.time()
    for i, (photo, truth) in enumerate(zip(photos, labels)):
        cert = certify(model, photo, sigma, n0=n0, n=n, alpha=alpha, batch_size=batch_size, seed=seed + i)
        rows.append({"photo": Path(photo).name, "truth": truth, "label": cert.label, "radius": cert.radius,
                     "p_lower": cert.p_lower, "seconds": round(cert.seconds, 3)})
    seconds = time.time() - start
    right = [r["label"] == r["truth"] for r in rows]
    return {
        "n_photos": len(rows), "sigma": sigma, "n": n, "n0": n0, "alpha": alpha, "input_size": model.size,
        "counts": {c: sum(lab == c for lab in labels) for c in model.classes},
        "certified_accuracy": {f"{r:g}": _by_class([ok and row["radius"] >= r for ok, row in zip(right, rows)],
                                                    labels, model.classes) for r in radii},
        "clean_accuracy": _by_class(right, labels, model.classes),
        "abstain_rate": _by_class([r["label"] == ABSTAIN for r in rows], labels, model.classes),
        "median_radius_when_right": float(np.median([r["radius"] for r, ok in zip(rows, right) if ok]))
        if any(right) else None,
        "seconds": round(seconds, 1), "seconds_per_photo": round(seconds / max(len(rows), 1), 2),
        "rows": rows,
    }


def _attacks(l2_radii: Sequence[float], epsilons: Sequence[float]) -> list[tuple[str, str, float]]:
    """(column name, norm, radius) of every attack: L2 radii as given, L-infinity epsilons as k/255."""
    return ([(f"L2 {r:g}", "l2", r) for r in l2_radii]
            + [(f"Linf {round(e * 255)}/255", "linf", e) for e in epsilons])


def _pgd_batched(attacked, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, steps: int, per_call: int,
                 seed: int) -> torch.Tensor:
    import torch

    return torch.cat([pgd(attacked, x[i:i + per_call], y[i:i + per_call], eps, steps, seed=seed + i, norm=norm)
                      for i in range(0, len(x), per_call)])


def smoothed_under_attack(model: Predictor, photos: Sequence[Path], labels: Sequence[str],
                          l2_radii: Sequence[float] = L2_RADII, epsilons: Sequence[float] = EPSILONS,
                          steps: int = 10, draws: int = DRAWS, judge_n: int = JUDGE_N, n0: int = DEFAULT_N0,
                          alpha: float = DEFAULT_ALPHA, batch_size: int = 16, seed: int = 0) -> dict:
    """The smoothed classifier's accuracy on the photos unattacked ("none") and after EOT-PGD at each L2 radius
    and L-infinity eps, every photo judged by CERTIFY with ``judge_n`` samples (abstaining is wrong), overall and
    per class; plus each attacked photo's answer. ``batch_size`` bounds the images (photos x draws) in one
    backward pass."""
    import torch

    sigma = card_sigma(model.card)
    net = PixelModel(model)
    x = torch.from_numpy(np.stack([photo_pixels(model, p) for p in photos]))
    y = torch.tensor([model.classes.index(lab) for lab in labels])
    smoothed = SmoothedLogits(net, sigma, draws, seed)
    per_call = max(1, batch_size // draws)
    start = time.time()

    def judged(adv: torch.Tensor, offset: int) -> list[str]:
        return [certify_at(model, a, sigma, judge_n, n0, alpha, DEFAULT_BATCH, seed + offset + i).label
                for i, a in enumerate(adv.numpy())]

    answers, norms, bounds = {"none": judged(x, 0)}, {"none": [0.0] * len(x)}, {"none": 0.0}
    for k, (name, norm, eps) in enumerate(_attacks(l2_radii, epsilons), start=1):
        bounds[name] = eps if norm == "l2" else eps * math.sqrt(x[0].numel())
        adv = _pgd_batched(smoothed, x, y, eps, norm, steps, per_call, seed)
        answers[name] = judged(adv, 1000 * k)
        norms[name] = [float(v) for v in (adv - x).flatten(1).norm(dim=1)]
    return {
        "n_photos": len(photos), "sigma": sigma, "steps": steps, "draws": draws, "judge_n": judge_n, "n0": n0,
        "alpha": alpha, "input_size": model.size,
        "accuracy": {name: _by_class([a == t for a, t in zip(got, labels)], labels, model.classes)
                     for name, got in answers.items()},
        "abstain_rate": {name: _share([a == ABSTAIN for a in got]) for name, got in answers.items()},
        "seconds": round(time.time() - start, 1), "answers": answers, "l2_norms": norms,
        "l2_bounds": bounds,
    }


def flipped_inside(certificates: Sequence[dict], attacked: dict) -> dict:
    """The honesty check on real attacks: for each attack, the photos whose certificate (a row of
    :func:`certified_accuracy`, same order as the attacked photos) covers the change the attack made (its
    radius above the change's L2 norm), and how many of those the attack got answered with another class
    (abstaining is not a flip). Anything above zero contradicts a certificate, beyond its alpha."""
    checked = flipped = 0
    for name, labels in attacked["answers"].items():
        for row, label, norm in zip(certificates, labels, attacked["l2_norms"][name]):
            if row is not None and row["label"] != ABSTAIN and row["radius"] > norm:
                checked += 1
                flipped += label not in (row["label"], ABSTAIN)
    return {"covered": checked, "flipped": flipped}


def certified_within(certificates: Sequence[dict], labels: Sequence[str], classes: Sequence[str],
                     attacked: dict) -> dict:
    """For each attack, the share of the attacked photos whose certificate (rows of :func:`certified_accuracy`,
    in the attacked photos' order) has the true label and a radius of at least the attack's L2 bound (its radius;
    eps * sqrt(3 * size * size) for L-infinity): a lower bound on the smoothed classifier's accuracy under any
    attack of that size on those photos, overall and per class."""
    return {name: _by_class([row["label"] == row["truth"] and row["radius"] >= bound for row in certificates],
                            labels, classes) for name, bound in attacked["l2_bounds"].items()}


def fast_under_attack(model: Predictor, photos: Sequence[Path], labels: Sequence[str],
                      l2_radii: Sequence[float] = L2_RADII, epsilons: Sequence[float] = EPSILONS, steps: int = 10,
                      batch_size: int = 16, seed: int = 0) -> dict:
    """A plain model (no noise) under the same PGD, judged by its own decision: accuracy unattacked ("none") and at
    each L2 radius and L-infinity eps, overall and per class."""
    import torch

    net = PixelModel(model)
    x = torch.from_numpy(np.stack([photo_pixels(model, p) for p in photos]))
    y = torch.tensor([model.classes.index(lab) for lab in labels])
    start = time.time()

    def judged(pixels: torch.Tensor) -> list[str]:
        with torch.no_grad():
            probs = torch.cat([net.logits(pixels[i:i + batch_size]).softmax(1)
                               for i in range(0, len(pixels), batch_size)])
        return [model.classes[int(c)] for c in decided_classes(model, probs.numpy())]

    answers = {"none": judged(x)}
    for name, norm, eps in _attacks(l2_radii, epsilons):
        answers[name] = judged(_pgd_batched(net, x, y, eps, norm, steps, batch_size, seed))
    return {
        "n_photos": len(photos), "steps": steps, "input_size": model.size,
        "accuracy": {name: _by_class([a == t for a, t in zip(got, labels)], labels, model.classes)
                     for name, got in answers.items()},
        "seconds": round(time.time() - start, 1), "answers": answers,
    }
