"""Poison check: Tran et al. 2018's spectral signatures, per label, on the backbone's features.

A backdoor's photos (say non-huskies with a purple dot, relabelled husky) sit together inside the label
they were given, apart from its honest photos, so the top singular vector of that label's centred features
points at them. Written by hand (a few lines of numpy) because ART's SpectralSignatureDefense wants an ART
classifier wrapping the whole net; numpy only, so the doctor and the red-team kit both import it from here.
"""

from __future__ import annotations

import numpy as np

MULTIPLIER = 1.5  # the paper removes 1.5 times the poisoned share it expects


def signature_scores(features: np.ndarray) -> np.ndarray:
    """Each row's squared projection on the top singular vector of the centred ``features`` (one label's)."""
    centred = features - features.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return (centred @ vt[0]) ** 2


def spectral_signature(features: np.ndarray, expected_fraction: float, multiplier: float = MULTIPLIER) -> np.ndarray:
    """Indices flagged as poisoned among one label's ``features``: the largest scores, ``multiplier``
    times the expected poisoned share of them, highest first."""
    return _highest(signature_scores(features), expected_fraction, multiplier)


def _highest(score: np.ndarray, fraction: float, multiplier: float) -> np.ndarray:
    k = max(1, min(len(score), round(multiplier * fraction * len(score))))
    return np.argsort(score)[::-1][:k]


def poison_flags(features: np.ndarray, y: np.ndarray, fraction: float,
                 multiplier: float = MULTIPLIER) -> dict[int, float]:
    """{photo index: its score over its label's median score} for the photos flagged in each label, where
    the defender suspects ``fraction`` of each label (0 < fraction <= 1). Labels of under 3 photos are skipped."""
    if not 0 < fraction <= 1:
        raise ValueError(f"the poison fraction must be above 0 and at most 1, not {fraction}")
    y = np.asarray(y)
    flags: dict[int, float] = {}
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        if len(idx) < 3:
            continue
        score = signature_scores(features[idx].reshape(len(idx), -1))
        median = float(np.median(score)) or 1e-12
        for i in _highest(score, fraction, multiplier):
            flags[int(idx[i])] = float(score[i] / median)
    return flags
