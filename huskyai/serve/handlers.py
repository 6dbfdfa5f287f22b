"""What the app does with a photo: the one prediction call, its audit line, and what the person sees.

Every listener on the page (the button, a fresh upload, an example) and the public /predict API call
the same function that :func:`classifier` returns, so the prediction happens in one place; the heatmap
that follows each of them and the public /explain API call the one that :func:`explainer` returns.
gradio renders error messages as HTML: any text the client controls (a file name) is escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable

import gradio as gr
from PIL import Image

from huskyai.audit import AuditLog, audited_predict, model_trust
from huskyai.errors import InvalidImageError
from huskyai.inference import disclosure
from huskyai.inference.batching import shared_predict
from huskyai.inference.predictor import Prediction, Predictor
from huskyai.serve.explain_handler import SOURCE as EXPLAIN_SOURCE
from huskyai.serve.explain_handler import explained
from huskyai.serve.limits.clients import client_address
from huskyai.serve.limits.ratelimit import RateLimiter
from huskyai.serve.photo_input import Upload
from huskyai.settings import Settings

Scores = dict[str, float] | str  # gr.Label's value: every class's probability, or the label alone


def classifier(model: Predictor, settings: Settings, audit: AuditLog,
               predict: Callable[..., Prediction] | None = None) -> Callable[..., tuple[Scores, str]]:
    """The event handler: an Upload in, (scores for gr.Label, the verdict line) out; a gr.Error otherwise.
    Both are told as far as ``settings.api_detail`` allows. ``predict``: the app's shared prediction call
    (huskyai.inference.batching.shared_predict), made here when not given."""
    predict = predict or shared_predict(model, settings.engine_batch)

    def classify(upload: Upload | None, request: gr.Request) -> tuple[Scores, str]:
        client = checked_client(upload, request, model, settings, audit, "app")
        try:
            pred = audited_predict(model, upload.data, name=upload.name, source="app", client=client, log=audit,
                                   predict=predict)
        except InvalidImageError as err:
            raise gr.Error(html.escape(str(err))) from None  # the message names the file, and the name is the sender's
        return (disclosure.label_value(pred, settings.api_detail),
                disclosure.verdict(pred, model.positive, settings.api_detail))

    return classify


def explainer(model: Predictor, settings: Settings,
              audit: AuditLog) -> Callable[..., tuple[Image.Image, str, str]]:
    """The heatmap's handler (the page's chained event and /explain): an Upload in, (overlay, method, verdict)
    out, with its own per-client limit (``settings.explain_rate_limit``) and one audit line per heatmap."""
    limiter = RateLimiter(settings.explain_rate_limit)

    def explain_photo(upload: Upload | None, request: gr.Request) -> tuple[Image.Image, str, str]:
        client = checked_client(upload, request, model, settings, audit, EXPLAIN_SOURCE)
        wait = limiter.check(client)
        if wait is not None:
            record_refusal(audit, model, client, "rate limit (explanations)", source=EXPLAIN_SOURCE)
            raise gr.Error(f"Slow down: at most {limiter.per_minute} heatmaps a minute from one address. "
                           f"Try again in {math.ceil(wait)} s.")
        try:
            return explained(model, upload, settings, client, audit)
        except InvalidImageError as err:
            raise gr.Error(html.escape(str(err))) from None

    return explain_photo


def checked_client(upload: Upload | None, request: gr.Request | None, model: Predictor, settings: Settings,
                   audit: AuditLog, source: str) -> str:
    """The pseudonymous client of a request whose upload can be read; else a gr.Error (and, for an
    unreadable upload, an audit line)."""
    if upload is None:
        raise gr.Error("Drop a photo on the image box first.")
    client = audit.client_id(request_client(request, settings.trusted_proxy_hops))
    if upload.problem is not None:
        record_refusal(audit, model, client, html.unescape(upload.problem), source=source)
        raise gr.Error(upload.problem)
    return client


def record_refusal(audit: AuditLog, model: Predictor, client: str, reason: str, source: str = "app") -> None:
    """An audit line for a request refused before any image was read (``client`` is already pseudonymous)."""
    audit.record(source=source, client=client, data=None, model_sha256=model.model_sha256, trust=model_trust(model),
                 latency_ms=0.0, refused=reason)


def request_client(request: gr.Request | None, trusted_hops: int) -> str:
    """The address a gradio request is charged to (the same rule as the middleware's)."""
    if request is None:
        return "unknown"
    headers = request.headers
    forwarded = headers.getlist("x-forwarded-for") if hasattr(headers, "getlist") else \
        [headers.get("x-forwarded-for") or ""]
    return client_address(request.client.host if request.client else None, forwarded, trusted_hops)
