"""Scoring a model on a folder-per-label photo set."""

from __future__ import annotations

from pathlib import Path

from huskyai.evaluation.metrics import binary_metrics
from huskyai.images.folders import scan_many
from huskyai.inference.predictor import Predictor, load
from huskyai.settings import EXPLAIN_METHODS as METHODS


def evaluate(model: Predictor | str | Path | None, data: str | Path | list[str | Path], sheet: str | Path | None = None,
             sha256: str | None = None, trust_unsigned: bool = False, report=print, explain: bool = False,
             explain_method: str = METHODS[0]) -> dict:
    """Metrics for the model's positive class on ``data`` (one folder per label, or several such folders,
    then also by folder under "by_source"), every misclassified file under "errors" and every unreadable
    one under "skipped". ``model`` is a loaded Predictor, or an export folder or name that is loaded
    (None: the shipped model; ``sha256`` and ``trust_unsigned`` as for ``huskyai.load``). ``sheet``: a PNG
    contact sheet of the misclassified photos is written there, when there are any; with ``explain``, each
    drawn as its heatmap overlay (huskyai.explain.explanation, made by ``explain_method``)."""
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
        save_contact_sheet(result["errors"], sheet, model if explain else None, explain_method)
        maps = " with where the model looked" if explain else ""
        report(f"contact sheet of {len(result['errors'])} misclassified photos{maps}: {sheet}")
    elif sheet:
        report(f"no misclassified photos: no contact sheet written to {sheet}")
    return result


def save_contact_sheet(errors: list[dict], path: str | Path, model: Predictor | None = None,
                       explain_method: str = METHODS[0]) -> Path:
    """The misclassified photos in one PNG, each captioned with its name, truth, answer and probability;
    given ``model``, each photo is its heatmap overlay instead (where ``model`` looked), the method named."""
    from huskyai.evaluation.sheets import contact_sheet

    tiles = []
    for e in errors:
        lines = [("", Path(e["file"]).name, "black"), ("", f"truth {e['truth']}", "black"),
                 ("", f"said {e['predicted']} p={e['probability']:.2f}", "firebrick")]
        tiles.append((e["file"], lines) if model is None else _explained_tile(model, e["file"], lines, explain_method))
    what = " and where the model looked" if model is not None else ""
    return contact_sheet(tiles, path, f"{len(errors)} misclassified photos{what}")


def _explained_tile(model: Predictor, file: str, lines: list, method: str) -> tuple:
    """(the photo's overlay, its caption lines and the map's method); the plain photo if it cannot be read now."""
    from huskyai.errors import InvalidImageError
    from huskyai.explain.explanation import explain

    try:
        shown = explain(model, file, method=method)
    except (InvalidImageError, OSError):  # changed on disk since it was scored: the sheet shows an empty frame
        return file, lines
    return shown.overlay, [*lines, ("", f"map: {shown.method}", "black")]
