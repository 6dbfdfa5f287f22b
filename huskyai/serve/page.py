"""The Gradio page and API: drop a photo, get "Husky, 97%".

This module is the layout only: the photo box (huskyai.serve.photo_input), the verdict, the examples and
the model card (huskyai.serve.modelcard), wired to the one handler (huskyai.serve.handlers). The server around
it, with the limits that run before gradio's queue, is huskyai.serve.server.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Callable, Iterator
from pathlib import Path

import gradio as gr

from huskyai.audit import AuditLog
from huskyai.inference.predictor import Prediction, Predictor
from huskyai.serve.handlers import classifier, explainer, request_client
from huskyai.serve.limits.uploads import UploadRegistry
from huskyai.serve.modelcard import confusion_matrix, model_card_markdown
from huskyai.serve.photo_input import PhotoInput
from huskyai.settings import Settings

__all__ = ["build_demo", "husky_page", "model_card_markdown", "CSS"]

_PACKAGE = Path(__file__).resolve().parent.parent  # huskyai/
# scikit-image photos: beside the source tree, or inside an installed wheel
EXAMPLES_DIR = next((d for d in (_PACKAGE / "examples", _PACKAGE.parent / "examples") if d.is_dir()),
                    _PACKAGE.parent / "examples")
CONCURRENCY_GROUP = "predict"  # every listener that predicts shares one limit (gradio's is per listener)
# heatmaps cost 10-120 predictions: one at a time, in a group of their own, so verdicts never queue behind them
EXPLAIN_GROUP, EXPLAIN_CONCURRENCY = "explain", 1
NO_ANSWER_JS = "() => 'No answer'"  # runs in the browser only
CLEAR_HEATMAP_JS = "() => [null, '']"  # a new photo: the previous photo's heatmap goes at once
NO_HEATMAP_JS = "() => 'no heatmap'"
CSS = "#verdict p { font-size: 2rem; font-weight: 700; margin: 0.4em 0; }"


def build_demo(model: Predictor, settings: Settings | None = None, audit: AuditLog | None = None,
               uploads: UploadRegistry | None = None, predict: Callable[..., Prediction] | None = None) -> gr.Blocks:
    """The page, queued: one concurrency group for every listener that predicts, one for heatmaps, and no
    REST route around the queue. Its server app is built by ``launch`` (``demo.app`` is None until then)."""
    settings = settings or Settings()
    with _server_app_built_at_launch():
        with gr.Blocks(title="Husky AI", analytics_enabled=False, delete_cache=None) as demo:
            gr.Markdown("# Husky AI\nIs this a husky? Drop a photo, paste one, or use your webcam.")
            audit = audit or AuditLog()
            with gr.Tab("Husky"):
                husky_page(model, settings, audit, uploads, predict)
            with gr.Tab("Mood"):
                mood_page(settings, audit)
        # api_open=False: the REST route /run/predict would skip the queue and its concurrency limit
        demo.queue(default_concurrency_limit=settings.workers, max_size=64, api_open=False)
    return demo


@contextlib.contextmanager
def _server_app_built_at_launch() -> Iterator[None]:
    """gradio builds a FastAPI app of ~85 routes in Blocks(), at the end of its ``with`` and in queue(), and
    throws each away: launch() (or gr.mount_gradio_app) builds the one it serves. The three throwaway builds
    cost 0.2 to 0.5 s each here, a third of the start-up after ``import gradio`` (issue #17): skipped."""
    from gradio.routes import App

    real = App.__dict__.get("create_app")
    if not isinstance(real, staticmethod):  # another gradio: leave it alone
        yield
        return
    App.create_app = staticmethod(lambda *args, **kwargs: None)
    try:
        yield
    finally:
        App.create_app = real


def husky_page(model: Predictor, settings: Settings, audit: AuditLog, uploads: UploadRegistry | None,
               predict: Callable[..., Prediction] | None = None) -> None:
    """The husky classifier inside the current Blocks (or gr.Tab): photo, verdict, heatmap, examples, card.

    Every trigger answers the verdict first; the heatmap follows as a chained event (``.success``), so the
    verdict never waits for it. The button's chain is the public API: /predict, then /explain."""
    with gr.Row(equal_height=False):
        with gr.Column(min_width=280):
            photo = PhotoInput(label="Photo", sources=["upload", "clipboard", "webcam"], height=360)
            photo.uploads = uploads
            photo.limit = settings.upload_limit
            button = gr.Button("Is it a husky?", variant="primary")
        with gr.Column(min_width=280):
            answer = gr.Markdown("Waiting for a photo", elem_id="verdict")
            scores = gr.Label(label="Confidence", num_top_classes=len(model.classes))
            overlay = gr.Image(label="Where it looked (red: the strongest husky evidence)", type="pil",
                               format="png", interactive=False, height=360, elem_id="heatmap")
            method = gr.Textbox(label="Heatmap made by", interactive=False, max_lines=1, elem_id="heatmap-method")
    ask = _asker(classifier(model, settings, audit, predict), explainer(model, settings, audit), photo,
                 [scores, answer], [overlay, method, answer])
    photo.change(None, None, [overlay, method], js=CLEAR_HEATMAP_JS, api_visibility="private")
    examples = sorted(EXAMPLES_DIR.glob("*.jpg"))
    if examples:  # a click answers at once, like an upload
        gallery = gr.Examples([[str(p)] for p in examples], inputs=photo, cache_examples=False,
                              api_visibility="private", label="Examples (scikit-image photos)")
        ask(gallery.load_input_event.then, api_visibility="private")
    _model_card(model)
    ask(button.click, api_name="predict", explain_api="explain")  # the button's chain is the public API
    ask(photo.upload, api_visibility="private")  # a fresh upload answers at once


def mood_page(settings: Settings, audit: AuditLog) -> None:
    """The mood model's tab (huskyai.mood): the day's features in, the predicted mood and its reasons out.
    A mood model that cannot be loaded (changed, untrusted) leaves the husky page serving and says why here."""
    from huskyai.errors import IntegrityError
    from huskyai.mood import load as load_mood
    from huskyai.serve.mood_tab import build_mood_tab

    try:
        mood = load_mood()
    except (IntegrityError, OSError, ValueError) as err:
        gr.Markdown(f"The mood model is not available: {html.escape(str(err))}")
        return
    build_mood_tab(mood, log=audit, concurrency_id=CONCURRENCY_GROUP,
                   client_of=lambda request: audit.client_id(request_client(request, settings.trusted_proxy_hops)))


def _asker(classify: Callable, explain_photo: Callable, photo: PhotoInput, outputs: list,
           explained: list) -> Callable[..., None]:
    """Wires a trigger to ``classify``, then (on success) to ``explain_photo``: on an error the verdict says
    "No answer" (never the previous photo's verdict under a new error), and the heatmap's box says so too."""

    def ask(listener: Callable, explain_api: str | None = None, **kwargs) -> None:
        asked = listener(classify, inputs=photo, outputs=outputs, concurrency_id=CONCURRENCY_GROUP, **kwargs)
        asked.failure(None, None, outputs[-1], js=NO_ANSWER_JS)
        visibility = {"api_name": explain_api} if explain_api else {"api_visibility": "private"}
        heat = asked.success(explain_photo, inputs=photo, outputs=explained, concurrency_id=EXPLAIN_GROUP,
                             concurrency_limit=EXPLAIN_CONCURRENCY, show_progress_on=explained[:1], **visibility)
        heat.failure(None, None, explained[1], js=NO_HEATMAP_JS)

    return ask


def _model_card(model: Predictor) -> None:
    with gr.Accordion("Model card", open=False):
        gr.Markdown(model_card_markdown(model))
        plot = confusion_matrix(model)  # the bytes the card's hash vouches for
        if plot is not None:
            gr.Image(plot, label="Validation confusion matrix", interactive=False, height=300, format="png")
