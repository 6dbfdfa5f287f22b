"""What the app does with a photo: the one prediction call, its audit line, and what the person sees.

Every listener on the page (the button, a fresh upload, an example) and the public /predict API call
the same function that :func:`classifier` returns, so the prediction happens in one place.
gradio renders error messages as HTML: any text the client controls (a file name) is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Callable

import gradio as gr

from .audit import AuditLog, audited_predict, model_trust
from .batching import EngineQueue
from .images import InvalidImageError
from .photo_input import Upload
from .predictor import Prediction, Predictor
from .serving import Settings, client_address

Scores = dict[str, float]


def classifier(model: Predictor, settings: Settings, audit: AuditLog) -> Callable[..., tuple[Scores, str]]:
    """The event handler: an Upload in, (scores for gr.Label, the verdict line) out; a gr.Error otherwise."""
    predict = EngineQueue(model, settings.engine_batch).predict if settings.engine_batch else model.predict

    def classify(upload: Upload | None, request: gr.Request) -> tuple[Scores, str]:
        if upload is None:
            raise gr.Error("Drop a photo on the image box first.")
        client = audit.client_id(request_client(request, settings.trusted_proxy_hops))
        if upload.problem is not None:
            record_refusal(audit, model, client, html.unescape(upload.problem))
            raise gr.Error(upload.problem)
        try:
            pred = audited_predict(model, upload.data, name=upload.name, source="app", client=client, log=audit,
                                   predict=predict)
        except InvalidImageError as err:
            raise gr.Error(html.escape(str(err))) from None  # the message names the file, and the name is the sender's
        return pred.scores, verdict(pred, model.positive)

    return classify


def verdict(pred: Prediction, positive: str) -> str:
    """The answer in words, for example "Husky, 97%" or "Not a husky, 88%"."""
    is_pos = pred.label == positive
    confidence = pred.positive_probability if is_pos else 1 - pred.positive_probability
    title = positive.replace("_", " ").capitalize() if is_pos else f"Not a {positive.replace('_', ' ')}"
    return f"{title}, {confidence:.0%}"


def record_refusal(audit: AuditLog, model: Predictor, client: str, reason: str) -> None:
    """An audit line for a request refused before any image was read (``client`` is already pseudonymous)."""
    audit.record(source="app", client=client, data=None, model_sha256=model.model_sha256, trust=model_trust(model),
                 latency_ms=0.0, refused=reason)


def request_client(request: gr.Request | None, trusted_hops: int) -> str:
    """The address a gradio request is charged to (the same rule as the middleware's)."""
    if request is None:
        return "unknown"
    headers = request.headers
    forwarded = headers.getlist("x-forwarded-for") if hasattr(headers, "getlist") else \
        [headers.get("x-forwarded-for") or ""]
    return client_address(request.client.host if request.client else None, forwarded, trusted_hops)
