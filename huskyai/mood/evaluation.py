"""Scoring a mood model on a diary with known moods, against the same baselines as training.

A diary the model was trained on gives in-sample numbers, better than any new day will see: the card
records its training diary's sha256 and first and last day, so such a diary is recognised, the numbers on
its unseen days (if any) are given apart, and the result carries a warning naming the honest number, the
card's validation error from time-ordered folds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from huskyai.mood.diary import read_diary
from huskyai.mood.model import MoodModel
from huskyai.mood.train import error_metrics


def evaluate(model: MoodModel, csv: str | Path) -> dict:
    """MAE and RMSE of the model and of the baselines (yesterday's mood, the training mean, the mean of
    the 7 days before) on every day of ``csv`` that has a mood; each day sees only the days before it.

    Also: ``seen_in_training`` (how many of those days fall within the model's training days, and whether
    ``csv`` is its training diary), ``unseen`` (the same metrics on the other days, when some days are of
    each kind), ``validation`` (the card's own out-of-sample error) and ``warning`` (None, or why these
    numbers are optimistic)."""
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
    seen = _seen_in_training(model.card, diary.days.index[known], csv)
    result = {"days": int(known.sum()), "model": model.card["model"], "metrics": error_metrics(predictions, actual),
              "seen_in_training": {k: v for k, v in seen.items() if k != "mask"}, "validation": _validation(model.card)}
    mask = seen["mask"]
    if 0 < mask.sum() < len(mask):
        result["unseen"] = {"days": int((~mask).sum()),
                            "metrics": error_metrics({k: p[~mask] for k, p in predictions.items()}, actual[~mask])}
    result["warning"] = _warning(result)
    return result


def _seen_in_training(card: dict, dates: pd.Index, csv: str | Path) -> dict:
    """Which of ``dates`` lie within the card's training days, and whether ``csv`` is the training diary."""
    training = card.get("training", {})
    first, last = training.get("first_day"), training.get("last_day")
    days = pd.DatetimeIndex(dates).normalize()
    mask = ((days >= pd.Timestamp(first)) & (days <= pd.Timestamp(last)) if first and last
            else np.zeros(len(days), bool))
    mask = np.asarray(mask, bool)
    same = training.get("data_sha256") == hashlib.sha256(Path(csv).read_bytes()).hexdigest()
    return {"days": int(mask.sum()), "first_day": first, "last_day": last, "training_diary": same, "mask": mask}


def _validation(card: dict) -> dict:
    """The card's out-of-sample error of the model it ships: time-ordered folds, each fold's days unseen."""
    validation = card.get("validation", {})
    metrics = validation.get("metrics", {}).get(card.get("model"), {})
    return {"mae": metrics.get("mae"), "rmse": metrics.get("rmse"), "folds": len(validation.get("folds", []))}


def _warning(result: dict) -> str | None:
    """Why the result's numbers are in-sample, and the honest number; None when no day was seen in training."""
    seen, validation = result["seen_in_training"], result["validation"]
    if not seen["days"] and not seen["training_diary"]:
        return None
    if seen["training_diary"]:
        what = "this is the diary the model was trained on (its sha256 is on the card): these numbers are"
    else:
        what = (f"{seen['days']} of these {result['days']} days fall within the model's training days "
                f"({seen['first_day']} to {seen['last_day']}): if they come from its training diary, these numbers "
                f"are")
    honest = (f"the honest number is the card's validation MAE {validation['mae']:.3f} ({validation['folds']} "
              f"time-ordered folds, each judged on days it had not seen)" if validation["mae"] is not None
              else "the honest number is a validation on days the model never saw")
    unseen = result.get("unseen")
    after = (f"; on the {unseen['days']} days outside them, MAE {unseen['metrics']['model']['mae']:.3f}" if unseen
             else "")
    return f"{what} in-sample and optimistic; {honest}{after}"
