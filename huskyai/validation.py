"""Honest validation of the head: repeated stratified cross-validation with 95% confidence intervals.

Each repeat splits the photos into folds stratified by label and source; every fold refits the whole
recipe (head, zero-shot stage, threshold by inner CV) on the other folds and decides its own photos.
The point estimate is the mean over repeats; the interval is a percentile bootstrap over photos (a
resampled photo keeps its decisions from every repeat), so it reflects how few huskies there are.
"""

from __future__ import annotations

import numpy as np
from fastprogress.fastprogress import progress_bar

from .head import fit_binary_head

METRICS = ("accuracy", "precision", "recall", "f1")


def _scores(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"accuracy": (tp + tn) / (tp + fp + tn + fn), "precision": precision, "recall": recall, "f1": f1}


def summarise(decisions: np.ndarray, truth: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean over repeats and a 95% bootstrap interval for each metric; ``decisions`` is (repeats, photos)."""
    def counts(d, t):
        return (d & t).sum(-1), (d & ~t).sum(-1), (~d & ~t).sum(-1), (~d & t).sum(-1)

    point = {k: float(v.mean()) for k, v in _scores(*counts(decisions, truth[None])).items()}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(truth), (n_boot, len(truth)))
    boot = _scores(*[c.sum(1) for c in counts(decisions[:, idx].transpose(1, 0, 2), truth[idx][:, None])])
    out = {"n": int(len(truth)), "positives": int(truth.sum())}
    for k in METRICS:
        lo, hi = np.percentile(boot[k], [2.5, 97.5])
        out[k] = {"mean": round(point[k], 4), "ci95": [round(float(lo), 4), round(float(hi), 4)]}
    return out


def cross_validate(x_views: np.ndarray, is_pos: np.ndarray, margins: np.ndarray | None, strata: list[str],
                   repeats: int = 3, folds: int = 5, c: float = 0.01, seed: int = 0) -> np.ndarray:
    """Out-of-fold decisions, (repeats, photos), of the two-class recipe refitted in every fold."""
    from sklearn.model_selection import StratifiedKFold

    decisions = np.zeros((repeats, len(is_pos)), bool)
    splits = [(r, tr, te) for r in range(repeats)
              for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed + r).split(x_views[0], strata)]
    for r, tr, te in progress_bar(splits):
        head = fit_binary_head(x_views[:, tr], is_pos[tr], None if margins is None else margins[tr], c, seed + r)
        decisions[r, te] = head.predict(x_views[0][te], None if margins is None else margins[te])
    return decisions


def cv_report(decisions: np.ndarray, is_pos: np.ndarray, sources: list[str]) -> dict:
    """The card's "cv" entry: all photos, and each source separately when there are several."""
    report = {"all": summarise(decisions, is_pos)}
    names = sorted(set(sources) - {""})
    if len(names) > 1:
        for name in names:
            mask = np.array([s == name for s in sources])
            report[name] = summarise(decisions[:, mask], is_pos[mask])
    return report
