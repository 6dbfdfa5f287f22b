"""Scoring a model on a folder-per-label photo set."""

from __future__ import annotations

from pathlib import Path

from .data import scan
from .metrics import binary_metrics
from .predictor import Predictor


def evaluate(model: Predictor, data_dir: str | Path, report=print) -> dict:
    """Metrics for the model's positive class on ``data_dir``, plus every misclassified file."""
    photos = scan(data_dir, model.positive, report)
    preds = model.predict_batch(s.path for s in photos.samples)
    truth = [s.label == model.positive for s in photos.samples]
    result = binary_metrics(truth, [p.label == model.positive for p in preds])
    result["errors"] = [
        {"file": str(s.path), "truth": s.label, "predicted": p.label, "probability": round(p.probability, 6)}
        for s, p, t in zip(photos.samples, preds, truth)
        if (p.label == model.positive) != t
    ]
    result["skipped"] = [{"file": str(path), "reason": why} for path, why in photos.skipped]
    return result
