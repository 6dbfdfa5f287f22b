"""Scoring a model on a folder-per-label photo set."""

from __future__ import annotations

from pathlib import Path

from .data import scan_many
from .metrics import binary_metrics
from .predictor import Predictor


def evaluate(model: Predictor, data_dir: str | Path | list[str | Path], report=print) -> dict:
    """Metrics for the model's positive class on ``data_dir`` (one folder or several, then also by
    folder under "by_source"), plus every misclassified file."""
    photos = scan_many(data_dir, model.positive, report)
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
    return result


def save_contact_sheet(errors: list[dict], path: str | Path, thumb: int = 160, cols: int = 6) -> None:
    """The misclassified photos in one PNG, each captioned with truth, answer and probability."""
    from PIL import Image, ImageDraw

    from .images import load_image

    rows = max(1, (len(errors) + cols - 1) // cols)
    sheet = Image.new("RGB", (cols * thumb, rows * (thumb + 30)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, e in enumerate(errors):
        x, y = (i % cols) * thumb, (i // cols) * (thumb + 30)
        img = load_image(e["file"])
        img.thumbnail((thumb - 4, thumb - 4))
        sheet.paste(img, (x + 2, y + 2))
        draw.text((x + 3, y + thumb), f"{Path(e['file']).name} truth {e['truth']}", fill="black")
        draw.text((x + 3, y + thumb + 13), f"said {e['predicted']} p={e['probability']:.2f}", fill="firebrick")
    sheet.save(path)
