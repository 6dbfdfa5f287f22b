"""A heatmap for the app: huskyai.explain on an upload, one audit line, and no more told than HUSKYAI_API_DETAIL
allows.

The overlay's caption gives P(husky) to two decimals under "full"; for "rounded" and "label" huskyai.explain.explanation
writes a caption that tells only as much (huskyai.inference.disclosure), on the one decoded photo.
The heatmap itself is relative (its peak is 1 whatever P is), but it is still a measurement of how P moves
under ~120 occlusions (or of a gradient): far more about the model per query than a label, which is why
heatmaps have their own, smaller rate limit.
"""

from __future__ import annotations

from PIL import Image

from huskyai.audit import AuditLog, audited_explain
from huskyai.inference import disclosure
from huskyai.inference.predictor import Predictor
from huskyai.serve.photo_input import Upload
from huskyai.settings import Settings

SOURCE = "app-explain"


def explained(model: Predictor, upload: Upload, settings: Settings, client: str,
              audit: AuditLog) -> tuple[Image.Image, str, str]:
    """(overlay, method, verdict) for one upload, audited as one line of source "app-explain"; an unreadable
    photo raises InvalidImageError (audited too)."""
    shown = audited_explain(model, upload.data, name=upload.name, source=SOURCE, client=client, log=audit,
                            method=settings.explain_method, detail=settings.api_detail)
    pred = shown.prediction
    return shown.overlay, shown.method, disclosure.verdict(pred, model.positive, settings.api_detail)

