"""The Gradio page and API: drop a photo, get "Husky, 97%".

This module is the layout only: the photo box (huskyai.serve.photo_input), the verdict, the heatmap, the
examples and the model card (huskyai.serve.modelcard), wired to the handlers (huskyai.serve.handlers); the
Mood tab (huskyai.serve.mood_tab); and a footer naming the APIs. The server around it, with the limits that
run before gradio's queue, is huskyai.serve.server.

What is on screen always belongs to the photo in the box: a new photo clears the previous heatmap, certified
answer and any message about the previous photo at once, removing the photo clears its verdict, and a refusal
replaces the verdict with "No answer". A photo dropped on a box that already holds one replaces it.

Where the server holds a noise-trained model, a checkbox offers a certified answer (huskyai.inference.certify):
opted in, each photo's verdict and heatmap are followed by the answer in words, "Husky, certified within radius
0.31 (...)". The page asks the server for it only when the box is ticked: the browser decides, by giving a hidden
field a new value, and that field's change is the server's event. An event sent for every photo and skipped on
the server would cost each person a place in the queue and a prediction of their per-minute budget.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from huskyai.inference.predictor import Predictor
from huskyai.serve import gradio_adapter
from huskyai.serve.context import ServeContext
from huskyai.serve.handlers import certifier, classifier, explainer
from huskyai.serve.modelcard import confusion_matrix, model_card_markdown
from huskyai.serve.photo_input import PhotoBox
from huskyai.serve.rest import API_PATH

__all__ = ["build_demo", "husky_page", "model_card_markdown", "CSS", "PAGE_JS"]

_PACKAGE = Path(__file__).resolve().parent.parent  # huskyai/
# scikit-image photos: beside the source tree, or inside an installed wheel
EXAMPLES_DIR = next((d for d in (_PACKAGE / "examples", _PACKAGE.parent / "examples") if d.is_dir()),
                    _PACKAGE.parent / "examples")
CONCURRENCY_GROUP = "predict"  # every listener that predicts shares one limit (gradio's is per listener)
# heatmaps cost 10-120 predictions: one at a time, in a group of their own, so verdicts never queue behind them
EXPLAIN_GROUP, EXPLAIN_CONCURRENCY = "explain", 1
# a certified answer keeps every core busy for seconds: one at a time, in a group of its own
CERTIFY_GROUP, CERTIFY_CONCURRENCY = "certify", 1
ROBUST_WAIT = 30.0  # seconds the page waits, while it is built, for the noise-trained model to load
WAITING = "Waiting for a photo"
# these run in the browser only; {} is gr.Label's empty value
NO_ANSWER_JS = "() => [{}, 'No answer']"  # a refusal: no verdict and no confidences of an earlier photo
NEW_PHOTO_JS = f"() => {{ {gradio_adapter.CLOSE_TOASTS_JS}; return [null, '']; }}"  # the previous heatmap goes
REMOVED_JS = f"() => {{ {gradio_adapter.CLOSE_TOASTS_JS}; return [{{}}, {WAITING!r}, null, '']; }}"
PAGE_JS = gradio_adapter.REPLACE_ON_DROP_JS  # a photo dropped on a filled box replaces its photo
# the certified answer is asked for only when the box is ticked and a photo is there: then the hidden field gets
# a new value (the time), whose change is the server's event; otherwise it keeps its value and nothing is sent
CERTIFY_IF_ASKED_JS = "(asked, photo, last) => (asked && photo) ? String(Date.now()) : last"
CERTIFY_TICKED_JS = "(asked, photo, last) => [(asked && photo) ? String(Date.now()) : last, '']"
CLEAR_JS = "() => ''"
CSS = "#verdict p { font-size: 2rem; font-weight: 700; margin: 0.4em 0; }"
CERTIFY_INFO = ("A second model, trained under noise, answers again by randomized smoothing, with a radius: no change "
                "of the photo within it (in L2, over the pixels the model sees) can flip that answer.")
HEATMAP_LABEL = "Where it looked: red marks what raised P(husky) most, whatever the verdict"
HEATMAP_INFO = ("occlusion: grey squares hide one part of the photo at a time, and red is where hiding it lowered "
                "P(husky) most. Grad-CAM: the network's own gradients for 'husky'. Either way the map is "
                "relative: on a photo that is not a husky, red is the little husky evidence there is.")
EXAMPLES_LABEL = "Examples: scikit-image's photos, none of them a husky (try a husky photo of your own)"
FOOTER = (f"**For scripts:** `curl --data-binary @photo.jpg http://HOST{API_PATH}` (or `curl -F file=@photo.jpg "
          f"...`) answers in JSON: `{{\"label\": ..., \"verdict\": ..., \"scores\": ...}}`. gradio's own API "
          "(/predict, /explain, /predict_mood) is under \"Use via API\" below.")


def build_demo(ctx: ServeContext) -> gr.Blocks:
    """The page, queued: one concurrency group for every listener that predicts, one for heatmaps, and no
    REST route around the queue. Its server app is built by ``launch`` (``demo.app`` is None until then)."""
    with gradio_adapter.server_app_built_at_launch():
        with gr.Blocks(title="Husky AI", analytics_enabled=False, delete_cache=None) as demo:
            gr.Markdown("# Husky AI")
            with gr.Tab("Husky"):
                gr.Markdown("Is this a husky? Drop a photo, paste one, or use your webcam.")
                husky_page(ctx)
            with gr.Tab("Mood"):
                mood_page(ctx)
            gr.Markdown(FOOTER, elem_id="footer-api")
        # api_open=False: the REST route /run/predict would skip the queue and its concurrency limit
        demo.queue(default_concurrency_limit=ctx.settings.workers, max_size=64, api_open=False)
    return demo


def husky_page(ctx: ServeContext) -> None:
    """The husky classifier inside the current Blocks (or gr.Tab): photo, verdict, heatmap, examples, card.

    Every trigger answers the verdict first; the heatmap follows as a chained event (``.success``), so the
    verdict never waits for it. The button's chain is the public API: /predict, then /explain."""
    certifies = offers_certified_answers(ctx)
    with gr.Row(equal_height=False):
        with gr.Column(min_width=280):
            photo = PhotoBox(label="Photo", sources=["upload", "clipboard", "webcam"], height=360)
            button = gr.Button("Is it a husky?", variant="primary")
            if certifies:
                certify_box = gr.Checkbox(label=certify_label(ctx), value=False, info=CERTIFY_INFO,
                                          elem_id="certify")
        with gr.Column(min_width=280):
            answer = gr.Markdown(WAITING, label="Verdict", elem_id="verdict")
            scores = gr.Label(label="Confidence", num_top_classes=len(ctx.model.classes))
            if certifies:
                certificate = gr.Markdown("", label="Certified answer", elem_id="certificate")
                trigger = gr.Textbox("", visible="hidden", interactive=False, elem_id="certify-trigger")
            overlay = gr.Image(label=HEATMAP_LABEL, type="pil", format="png", interactive=False, height=360,
                               elem_id="heatmap")
            method = gr.Textbox(label="How the heatmap was made", info=HEATMAP_INFO, interactive=False,
                                max_lines=3, elem_id="heatmap-method")
    then = None
    if certifies:
        then = _certify_wiring(ctx, photo, certify_box, certificate, trigger)
    ask = _asker(classifier(ctx), explainer(ctx), photo, [scores, answer], [overlay, method, answer], then)
    photo.change(None, None, [overlay, method], js=NEW_PHOTO_JS, api_visibility="private")
    photo.clear(None, None, [scores, answer, overlay, method], js=REMOVED_JS, api_visibility="private")
    examples = sorted(EXAMPLES_DIR.glob("*.jpg"))
    if examples:  # a click answers at once, like an upload
        gallery = gr.Examples([[str(p)] for p in examples], inputs=photo, cache_examples=False,
                              api_visibility="private", label=EXAMPLES_LABEL)
        ask(gallery.load_input_event.then, api_visibility="private")
    _model_card(ctx.model)
    ask(button.click, api_name="predict", explain_api="explain")  # the button's chain is the public API
    ask(photo.upload, api_visibility="private")  # a fresh upload answers at once


def mood_page(ctx: ServeContext) -> None:
    """The mood model's tab (huskyai.mood): the day's diary in, the predicted mood and its reasons out.
    A mood model that cannot be loaded (changed, untrusted) leaves the husky page serving and says why here."""
    from huskyai.errors import IntegrityError
    from huskyai.mood import load as load_mood
    from huskyai.serve.mood_tab import build_mood_tab

    try:
        mood = load_mood()
    except (IntegrityError, OSError, ValueError) as err:
        gr.Markdown(f"The mood model is not available: {html.escape(str(err))}")
        return
    build_mood_tab(mood, log=ctx.audit, client_of=ctx.client, metrics=ctx.metrics, concurrency_id=CONCURRENCY_GROUP)


def offers_certified_answers(ctx: ServeContext) -> bool:
    """Whether the page offers certified answers: the server holds a noise-trained model (waiting up to
    ROBUST_WAIT seconds for it to load), or is still loading one."""
    if ctx.robust is None:
        return False
    return ctx.robust.get(timeout=ROBUST_WAIT) is not None or ctx.robust.loading


def certify_label(ctx: ServeContext) -> str:
    """The opt-in's label, with the time one certified answer took here when the model was warmed up."""
    seconds = ctx.estimated_certify_seconds()
    return f"Certify (slower: ~{max(1, round(seconds))} s)" if seconds is not None else "Certify (slower)"


def _certify_wiring(ctx: ServeContext, photo: gr.Image, certify_box: gr.Checkbox, certificate: gr.Markdown,
                    trigger: gr.Textbox) -> Callable:
    """The certified answer's events: the hidden field's change runs the handler (one at a time); ticking the box
    certifies the photo there; a new photo clears the answer and cancels one still coming. Returns what follows
    each heatmap: a step in the browser that changes the field only when the box is ticked."""
    certifying = trigger.change(certifier(ctx), inputs=photo, outputs=certificate, concurrency_id=CERTIFY_GROUP,
                                concurrency_limit=CERTIFY_CONCURRENCY, show_progress_on=[certificate],
                                api_visibility="private")
    certify_box.input(None, [certify_box, photo, trigger], [trigger, certificate], js=CERTIFY_TICKED_JS,
                      api_visibility="private")
    # a new photo drops the answer for the old one, even one still on its way
    photo.change(None, None, certificate, js=CLEAR_JS, cancels=[certifying], api_visibility="private")

    def then(explained) -> None:
        explained.then(None, [certify_box, photo, trigger], trigger, js=CERTIFY_IF_ASKED_JS, api_visibility="private")

    return then


def _asker(classify: Callable, explain_photo: Callable, photo: gr.Image, outputs: list,
           explained: list, then: Callable | None = None) -> Callable[..., None]:
    """Wires a trigger to ``classify``, then (on success) to ``explain_photo``, then to ``then`` (the certified
    answer's step, when the page offers one): on an error the verdict says "No answer" and the confidences go
    (never the previous photo's answer under a new error)."""

    def ask(listener: Callable, explain_api: str | None = None, **kwargs) -> None:
        asked = listener(classify, inputs=photo, outputs=outputs, concurrency_id=CONCURRENCY_GROUP, **kwargs)
        asked.failure(None, None, outputs, js=NO_ANSWER_JS)
        visibility = {"api_name": explain_api} if explain_api else {"api_visibility": "private"}
        heatmap = asked.success(explain_photo, inputs=photo, outputs=explained, concurrency_id=EXPLAIN_GROUP,
                                concurrency_limit=EXPLAIN_CONCURRENCY, show_progress_on=explained[:1], **visibility)
        if then is not None:
            then(heatmap)

    return ask


def _model_card(model: Predictor) -> None:
    with gr.Accordion("Model card", open=False):
        gr.Markdown(model_card_markdown(model))
        plot = confusion_matrix(model)  # the bytes the card's hash vouches for
        if plot is not None:
            gr.Image(plot, label="Validation confusion matrix", interactive=False, height=300, format="png")
