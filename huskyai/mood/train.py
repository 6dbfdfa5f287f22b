"""Training honestly: past-only features, folds split by time, every model against the baselines.

The days are never shuffled: fold k trains on the days before its validation block (scikit-learn's
TimeSeriesSplit), and the preprocessing is fitted on those training days only. Each model and the three
baselines (yesterday's mood, the training mean, the mean of the 7 days before) are scored on the same
validation days, pooled over the folds. The model with the lowest validation MAE wins; it is refitted
on all days and exported (huskyai.mood.export).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from huskyai.mood.diary import Diary
from huskyai.mood.features import LagRules, Preprocessing, engineer
from huskyai.mood.importance import permutation_importance, pooled
from huskyai.mood.models import FITTERS, MODELS

BASELINES = ("yesterday", "overall_mean", "mean_7_days")


@dataclass
class Validation:
    """Out-of-fold predictions of every model and baseline on the validation days, and what they cost."""
    dates: pd.DatetimeIndex
    actual: np.ndarray
    predictions: dict[str, np.ndarray]
    seconds: dict[str, float]
    folds: list[dict] = field(default_factory=list)  # per fold: train/validation days and each model's fit
    importance: list[dict] = field(default_factory=list)

    def metrics(self) -> dict[str, dict[str, float]]:
        return error_metrics(self.predictions, self.actual)

    def winner(self, models: tuple[str, ...]) -> str:
        scores = self.metrics()
        return min(models, key=lambda name: scores[name]["mae"])


def error_metrics(predictions: dict[str, np.ndarray], actual: np.ndarray) -> dict[str, dict[str, float]]:
    """MAE and RMSE of each named prediction against the actual moods."""
    return {name: {"mae": round(float(np.mean(np.abs(p - actual))), 4),
                   "rmse": round(float(np.sqrt(np.mean((p - actual) ** 2))), 4)} for name, p in predictions.items()}


def training_frame(diary: Diary, rules: LagRules) -> tuple[pd.DataFrame, np.ndarray, dict[str, str]]:
    """The features of every day that has a target, the targets, and each feature's diary column."""
    frame, sources = engineer(diary.days, diary.numeric, diary.categorical, diary.target, rules)
    known = diary.days[diary.target].notna().to_numpy()
    return frame[known], diary.days[diary.target].to_numpy(float)[known], sources


def _baselines(frame: pd.DataFrame, target: str, train_mean: float) -> dict[str, np.ndarray]:
    def filled(column: str) -> np.ndarray:
        return frame[column].fillna(train_mean).to_numpy(float)

    return {"yesterday": filled(f"{target}_yesterday"), "overall_mean": np.full(len(frame), train_mean),
            "mean_7_days": filled(f"{target}_mean7")}


def _splits(n: int, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import TimeSeriesSplit

    return list(TimeSeriesSplit(n_splits=folds).split(np.arange(n)))


def validate(diary: Diary, models: tuple[str, ...] = MODELS, folds: int = 4, rules: LagRules | None = None,
             seed: int = 0, importance_repeats: int = 5) -> Validation:
    """Score ``models`` and the baselines fold by fold; importance for the winner, on its validation days."""
    frame, y, sources = training_frame(diary, rules or LagRules())
    lo, hi = float(np.nanmin(y)), float(np.nanmax(y))
    out: dict[str, list[np.ndarray]] = {name: [] for name in (*models, *BASELINES)}
    seconds = dict.fromkeys(models, 0.0)
    kept: dict[str, list] = {name: [] for name in models}
    fold_rows, validation_rows = [], []
    for train, valid in _splits(len(frame), folds):
        prep = Preprocessing.fit(frame.iloc[train], sources)
        X_train, X_valid = prep.transform(frame.iloc[train]), prep.transform(frame.iloc[valid])
        for name, values in _baselines(frame.iloc[valid], diary.target, float(y[train].mean())).items():
            out[name].append(values)
        for name in models:
            started = time.perf_counter()
            model = FITTERS[name](X_train, y[train], (lo, hi), seed)
            seconds[name] += time.perf_counter() - started
            out[name].append(np.clip(model.predict(X_valid), lo, hi))
            kept[name].append((model, prep, X_valid, y[valid]))
        validation_rows.append(valid)
        fold_rows.append({"train_days": len(train), "validation_days": len(valid),
                          "validation_from": str(frame.index[valid[0]].date()),
                          "validation_to": str(frame.index[valid[-1]].date())})
    order = np.concatenate(validation_rows)
    result = Validation(frame.index[order], y[order], {k: np.concatenate(v) for k, v in out.items()},
                        {k: round(v, 2) for k, v in seconds.items()}, fold_rows)
    result.importance = _importance(kept[result.winner(models)], (lo, hi), importance_repeats, seed)
    return result


def _importance(fold_models: list, y_range: tuple[float, float], repeats: int, seed: int) -> list[dict]:
    per_fold = []
    for model, prep, X_valid, y_valid in fold_models:
        def predict(X: np.ndarray, model=model) -> np.ndarray:
            return np.clip(model.predict(X), *y_range)

        scores = permutation_importance(predict, X_valid, y_valid, prep.column_sources(), repeats, seed)
        per_fold.append((scores, len(y_valid)))
    return pooled(per_fold)


def fit_final(diary: Diary, name: str, rules: LagRules, seed: int = 0) -> tuple[object, Preprocessing, float]:
    """The winner refitted on every day (what ships), its preprocessing, and the seconds it took."""
    frame, y, sources = training_frame(diary, rules)
    prep = Preprocessing.fit(frame, sources)
    started = time.perf_counter()
    model = FITTERS[name](prep.transform(frame), y, (float(y.min()), float(y.max())), seed)
    return model, prep, time.perf_counter() - started
