"""What the app does with a photo: the one prediction call, the heatmap, their audit lines, and what the person
sees.

Every listener on the page (the button, a fresh upload, an example) and the public /predict API call
the same function that :func:`classifier` returns, so the prediction happens in one place; the heatmap
that follows each of them and the public /explain API call the one that :func:`explainer` returns.
gradio renders error messages as HTML: any text the client controls (a file name) is escaped. A refusal is
the person's business, not the server's: it is one line in the audit log and a message on the page, never a
traceback in the server's log.

Heatmaps have their own, smaller rate limit (``settings.explain_rate_limit``): a heatmap is relative (its
peak is 1 whatever P is), but it still measures how P moves under many occlusions (or a gradient), far more
about the model per query than a label. A heatmap over that limit is skipped, not refused: the verdict it
follows is complete, so the page says so quietly in the heatmap's box instead of showing an error.

A certified answer (the page's opt-in, :func:`certifier`) follows the heatmap when the person asked for one. It
costs about a thousand predictions, so it has the smallest budget (``settings.certify_rate_limit``, shared with
the lean route's ?certify=1) and runs one at a time (ServeContext.certify); over the budget, or without a
noise-trained model, its box says why, quietly, and the verdict stands.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import Any

import gradio as gr
from PIL import Image

from huskyai.audit import audited_explain, audited_predict
from huskyai.errors import InvalidImageError
from huskyai.inference import disclosure
from huskyai.inference.certify import DEFAULT_N0
from huskyai.serve import gradio_adapter
from huskyai.serve.context import CertifyBusy, ServeContext
from huskyai.serve.limits.ratelimit import RateLimiter
from huskyai.serve.metrics import EXPLAIN, GRADIO_API, PAGE
from huskyai.serve.photo_input import Upload, read_upload
from huskyai.serve.refusals import Refusal

SOURCE = "app"
EXPLAIN_SOURCE = "app-explain"
CERTIFY_SOURCE = "app-certify"
NO_PHOTO = "Drop a photo on the image box first."
Scores = dict[str, float] | str  # gr.Label's value: every class's probability, or the label alone


def refusal(message: str) -> gr.Error:
    """The page's error for a request it will not answer: a toast with ``message``, and no traceback in the
    server's log (the audit log has the line)."""
    return gr.Error(message, print_exception=False)


def classifier(ctx: ServeContext) -> Callable[..., tuple[Scores, str]]:
    """The event handler: the photo box's payload in, (scores for gr.Label, the verdict line) out; a gr.Error
    otherwise. Both are told as far as ``settings.api_detail`` allows."""

    def classify(photo: Any, request: gr.Request) -> tuple[Scores, str]:
        door = PAGE if gradio_adapter.from_the_page(request) else GRADIO_API
        with ctx.metrics.timed(door):
            upload, client = checked_upload(ctx, photo, request, SOURCE)
            try:
                pred = audited_predict(ctx.model, upload.data, name=upload.name, source=SOURCE, client=client,
                                       log=ctx.audit, predict=ctx.predict)
            except InvalidImageError as err:
                ctx.metrics.refused(Refusal.UNREADABLE_PHOTO)
                raise refusal(html.escape(str(err))) from None  # the message names the file: the sender's text
        ctx.metrics.answered(door, pred.label)
        detail = ctx.settings.api_detail
        return disclosure.label_value(pred, detail), disclosure.verdict(pred, ctx.model.positive, detail)

    return classify


def explainer(ctx: ServeContext) -> Callable[..., tuple[Image.Image | None, str, Any]]:
    """The heatmap's handler (the page's chained event and /explain): the photo box's payload in, (overlay,
    method, verdict) out, with its own per-client limit and one audit line per heatmap. Over the limit the
    heatmap is skipped: no overlay, the reason in the method's place, and the verdict left as it is."""
    limiter = RateLimiter(ctx.settings.explain_rate_limit, ctx.store, name="explanations")

    def explain_photo(photo: Any, request: gr.Request) -> tuple[Image.Image | None, str, Any]:
        with ctx.metrics.timed(EXPLAIN):
            upload, client = checked_upload(ctx, photo, request, EXPLAIN_SOURCE)
            wait = limiter.check(ctx.request_address(request))  # the address: the budget replicas share
            if wait is not None:
                ctx.refused(client, Refusal.EXPLAIN_RATE_LIMIT, "rate limit (explanations)", source=EXPLAIN_SOURCE)
                return None, skipped_heatmap(limiter.per_minute, wait), gr.skip()
            try:
                return explained(ctx, upload, client)
            except InvalidImageError as err:
                ctx.metrics.refused(Refusal.UNREADABLE_PHOTO)
                raise refusal(html.escape(str(err))) from None

    return explain_photo


def certifier(ctx: ServeContext) -> Callable[..., str]:
    """The certified answer's handler (the page's opt-in): the photo box's payload in, the answer in words out
    (huskyai.inference.certify's ``describe``), audited as one line of source "app-certify". Over the budget,
    without a noise-trained model, or while the server is busy with others, the words say so instead."""

    def certify_photo(photo: Any, request: gr.Request) -> str:
        upload, client = checked_upload(ctx, photo, request, CERTIFY_SOURCE)
        unavailable = ctx.certify_unavailable()
        if unavailable is not None:
            ctx.refused(client, Refusal.FAILED, "no certified answers: " + unavailable[0], source=CERTIFY_SOURCE)
            return unavailable[0]
        wait = ctx.certify_limiter.check(ctx.request_address(request))
        if wait is not None:
            ctx.refused(client, Refusal.RATE_LIMIT, "rate limit (certified answers)", source=CERTIFY_SOURCE)
            return skipped_certificate(ctx.certify_limiter.per_minute, wait, ctx.settings.certify_n)
        try:
            cert = ctx.certify(upload.data, name=upload.name, source=CERTIFY_SOURCE, client=client)
        except InvalidImageError as err:
            ctx.metrics.refused(Refusal.UNREADABLE_PHOTO)
            raise refusal(html.escape(str(err))) from None
        except CertifyBusy as err:
            ctx.refused(client, Refusal.QUEUE_FULL, "certified answers: busy", source=CERTIFY_SOURCE)
            return f"No certified answer: {err}."
        ctx.metrics.answered(PAGE, cert.label)
        return cert.describe()

    return certify_photo


def skipped_certificate(per_minute: int, wait: float, n: int) -> str:
    """What the certified answer's box says when the certification limit skipped one (each costs n + n0
    predictions)."""
    return (f"Certified answer skipped: at most {per_minute} certified answers a minute from one address (each costs "
            f"about {n + DEFAULT_N0:,} predictions); the verdict above is complete. Ask again in {math.ceil(wait)} s.")


def skipped_heatmap(per_minute: int, wait: float) -> str:
    """What the heatmap's box says when the heatmap limit skipped one."""
    return (f"Heatmap skipped: at most {per_minute} heatmaps a minute from one address; the verdict above is "
            f"complete. Ask again in {math.ceil(wait)} s for its heatmap.")


def explained(ctx: ServeContext, upload: Upload, client: str) -> tuple[Image.Image, str, str]:
    """(overlay, method, verdict) for one readable upload, audited as one line of source "app-explain"; an
    unreadable photo raises InvalidImageError (audited too). The overlay's caption and the verdict tell no more
    than ``settings.api_detail`` allows."""
    shown = audited_explain(ctx.model, upload.data, name=upload.name, source=EXPLAIN_SOURCE, client=client,
                            log=ctx.audit, method=ctx.settings.explain_method, detail=ctx.settings.api_detail)
    ctx.metrics.answered(EXPLAIN, shown.prediction.label)
    verdict = disclosure.verdict(shown.prediction, ctx.model.positive, ctx.settings.api_detail)
    return shown.overlay, shown.method, verdict


def checked_upload(ctx: ServeContext, photo: Any, request: gr.Request | None, source: str) -> tuple[Upload, str]:
    """The readable upload of a request and its pseudonymous client; else a gr.Error (and, for an unreadable
    upload, an audit line)."""
    upload = read_upload(photo, ctx.settings.upload_limit, ctx.uploads)
    if upload is None:
        ctx.metrics.refused(Refusal.NO_PHOTO)  # no audit line: nothing was sent
        raise refusal(NO_PHOTO)
    client = ctx.client(request)
    if upload.problem is not None:
        ctx.refused(client, Refusal.BAD_UPLOAD, html.unescape(upload.problem), source=source)
        raise refusal(upload.problem)
    return upload, client
