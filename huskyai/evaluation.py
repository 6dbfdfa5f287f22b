"""Scoring a model on a folder-per-label photo set."""

from __future__ import annotations

from pathlib import Path

from .data import scan_many
from .metrics import binary_metrics
from .predictor import Predictor, load


def evaluate(model: Predictor | str | Path | None, data: str | Path | list[str | Path], sheet: str | Path | None = None,
             sha256: str | None = None, trust_unsigned: bool = False, report=print) -> dict:
    """Metrics for the model's positive class on ``data`` (one folder per label, or several such folders,
    then also by folder under "by_source"), every misclassified file under "errors" and every unreadable
    one under "skipped". ``model`` is a loaded Predictor, or an export folder or name that is loaded
    (None: the shipped model; ``sha256`` and ``trust_unsigned`` as for ``huskyai.load``). ``sheet``: a PNG
    contact sheet of the misclassified photos is written there, when there are any."""
    if not isinstance(model, Predictor):
        model = load(model, sha256=sha256, trust_unsigned=trust_unsigned)
    photos = scan_many(data, model.positive, report)
    preds = model.predict_batch(s.path for s in photos.samples)
    truth = [s.label == model.positive for s in photos.samples]
    said = [p.label == model.positive for p in preds]
    result = binary_metrics(truth, said)
    sources = sorted({s.source for s in photos.samples} - {""})
    if sources:
        result["by_source"] = {src: binary_metrics(*zip(*[(t, a) for s, t, a in zip(photos.samples, truth, said)
                                                            if s.source == src])) for src in sources}
    result["errors"] = [
        {"file": str(s.path), "truth": s.label, "predicted": p.label, "probability": round(p.positive_probability, 6)}
        for s, p, t in zip(photos.samples, preds, truth)
        if (p.label == model.positive) != t
    ]
    result["skipped"] = [{"file": str(path), "reason": why} for path, why in photos.skipped]
    if sheet and result["errors"]:
        save_contact_sheet(result["errors"], sheet)
        report(f"contact sheet of {len(result['errors'])} misclassified photos: {sheet}")
    elif sheet:
        report(f"no misclassified photos: no contact sheet written to {sheet}")
    return result


def save_contact_sheet(errors: list[dict], path: str | Path) -> Path:
    """The misclassified photos in one PNG, each captioned with its name, truth, answer and probability."""
    from .sheets import contact_sheet

    tiles = [(e["file"], [("", Path(e["file"]).name, "black"), ("", f"truth {e['truth']}", "black"),
                          ("", f"said {e['predicted']} p={e['probability']:.2f}", "firebrick")]) for e in errors]
    return contact_sheet(tiles, path, f"{len(errors)} misclassified photos")
