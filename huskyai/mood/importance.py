"""Why the model says what it says: permutation importance per diary column, and one day's reasons.

Importance: on validation days the model never trained on, shuffle all the input columns that come from
one diary column (its value, its lags, its rolling means) together, and measure how much the mean
absolute error grows. A column the model does not need costs nothing when shuffled.
One day's reasons: put one diary column's inputs back at the typical day's values and see how far the
prediction moves; the difference is that column's push, up or down, in mood points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]


def groups(column_sources: Sequence[str]) -> dict[str, np.ndarray]:
    """Input column positions per diary column, in first-seen order."""
    out: dict[str, list[int]] = {}
    for position, source in enumerate(column_sources):
        out.setdefault(source, []).append(position)
    return {source: np.asarray(positions) for source, positions in out.items()}


def permutation_importance(predict: Predict, X: np.ndarray, y: np.ndarray, column_sources: Sequence[str],
                           repeats: int = 5, seed: int = 0) -> dict[str, list[float]]:
    """Per diary column, the growth of the MAE when its inputs are shuffled across days, one per repeat."""
    rng = np.random.default_rng(seed)
    base = float(np.mean(np.abs(predict(X) - y)))
    out: dict[str, list[float]] = {}
    for source, positions in groups(column_sources).items():
        scores = []
        for _ in range(repeats):
            shuffled = X.copy()
            shuffled[:, positions] = X[rng.permutation(len(X))][:, positions]
            scores.append(float(np.mean(np.abs(predict(shuffled) - y))) - base)
        out[source] = scores
    return out


def pooled(per_fold: list[tuple[dict[str, list[float]], int]]) -> list[dict]:
    """Fold results pooled (weighted by validation days), sorted from the most important."""
    total = sum(n for _, n in per_fold)
    rows = []
    for source in per_fold[0][0]:
        means = [np.mean(scores[source]) * n / total for scores, n in per_fold]
        spread = np.sqrt(np.mean([np.var(scores[source]) for scores, _ in per_fold]))
        rows.append({"feature": source, "mae_increase": round(float(np.sum(means)), 4),
                     "std": round(float(spread), 4)})
    return sorted(rows, key=lambda row: -row["mae_increase"])


def reasons(predict: Predict, x: np.ndarray, reference: np.ndarray, column_sources: Sequence[str]) -> list[dict]:
    """For one day's input row ``x``: each diary column's push on the prediction against ``reference``
    (the typical day), largest first. Positive pushes mood up."""
    x = np.asarray(x, np.float32).reshape(1, -1)
    named = list(groups(column_sources).items())
    batch = np.repeat(x, len(named), axis=0)
    for row, (_, positions) in enumerate(named):
        batch[row, positions] = reference[positions]
    moved = predict(np.concatenate([x, batch]))
    pushes = [{"feature": source, "push": round(float(moved[0] - moved[row + 1]), 3)}
              for row, (source, _) in enumerate(named)]
    return sorted(pushes, key=lambda p: -abs(p["push"]))
