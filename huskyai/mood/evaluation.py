"""Scoring a mood model on a diary with known moods, against the same baselines as training."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from huskyai.mood.diary import read_diary
from huskyai.mood.model import MoodModel
from huskyai.mood.train import error_metrics


def evaluate(model: MoodModel, csv: str | Path) -> dict:
    """MAE and RMSE of the model and of the baselines (yesterday's mood, the training mean, the mean of
    the 7 days before) on every day of ``csv`` that has a mood; each day sees only the days before it."""
    diary = read_diary(csv, model.target, min_days=1)
    X, dates = model.matrix(diary.days)
    known = diary.days[model.target].notna().to_numpy()
    actual = diary.days[model.target].to_numpy(float)[known]
    prep = model.prep
    train_mean = prep.means[prep.numeric.index(f"{model.target}_yesterday")]

    def column(name: str) -> np.ndarray:  # undo the standardisation: a missing lag was set to the mean
        i = prep.numeric.index(name)
        return X[known, i] * prep.stds[i] + prep.means[i]

    predictions = {"model": model.scores(X[known]), "yesterday": column(f"{model.target}_yesterday"),
                   "overall_mean": np.full(len(actual), train_mean),
                   "mean_7_days": column(f"{model.target}_mean7")}
    return {"days": int(known.sum()), "model": model.card["model"], "metrics": error_metrics(predictions, actual)}
