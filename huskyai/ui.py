"""The Gradio page and API: drop a photo, get "Husky, 97%".

This module is the layout only: the photo box (huskyai.photo_input), the verdict, the examples and
the model card (huskyai.modelcard), wired to the one handler (huskyai.handlers). The server around
it, with the limits that run before gradio's queue, is huskyai.webserver.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gradio as gr

from .audit import AuditLog
from .handlers import classifier
from .modelcard import confusion_matrix, model_card_markdown
from .photo_input import PhotoInput
from .predictor import Predictor
from .serving import Settings
from .uploads import UploadRegistry

__all__ = ["build_demo", "model_card_markdown", "CSS"]

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
CONCURRENCY_GROUP = "predict"  # every listener that predicts shares one limit (gradio's is per listener)
NO_ANSWER_JS = "() => 'No answer'"  # runs in the browser only
CSS = "#verdict p { font-size: 2rem; font-weight: 700; margin: 0.4em 0; }"


def build_demo(model: Predictor, settings: Settings | None = None, audit: AuditLog | None = None,
               uploads: UploadRegistry | None = None) -> gr.Blocks:
    """The page, queued: one concurrency group for every listener, and no REST route around the queue."""
    settings = settings or Settings()
    classify = classifier(model, settings, audit or AuditLog())
    with gr.Blocks(title="Husky AI", analytics_enabled=False, delete_cache=None) as demo:
        gr.Markdown("# Husky AI\nIs this a husky? Drop a photo, paste one, or use your webcam.")
        with gr.Row(equal_height=False):
            with gr.Column(min_width=280):
                photo = PhotoInput(label="Photo", sources=["upload", "clipboard", "webcam"], height=360)
                photo.uploads = uploads
                photo.limit = settings.upload_limit
                button = gr.Button("Is it a husky?", variant="primary")
            with gr.Column(min_width=280):
                answer = gr.Markdown("Waiting for a photo", elem_id="verdict")
                scores = gr.Label(label="Confidence", num_top_classes=len(model.classes))
        ask = _asker(classify, photo, [scores, answer])
        examples = sorted(EXAMPLES_DIR.glob("*.jpg"))
        if examples:  # a click answers at once, like an upload
            gallery = gr.Examples([[str(p)] for p in examples], inputs=photo, cache_examples=False,
                                  api_visibility="private", label="Examples (scikit-image photos)")
            ask(gallery.load_input_event.then, api_visibility="private")
        _model_card(model)
        ask(button.click, api_name="predict")  # the button is the public API (/predict)
        ask(photo.upload, api_visibility="private")  # a fresh upload answers at once
    # api_open=False: the REST route /run/predict would skip the queue and its concurrency limit
    demo.queue(default_concurrency_limit=settings.workers, max_size=64, api_open=False)
    return demo


def _asker(classify: Callable, photo: PhotoInput, outputs: list) -> Callable[..., None]:
    """Wires a trigger to ``classify``: shared concurrency group, and on an error the verdict says
    "No answer" (never the previous photo's verdict under a new error)."""

    def ask(listener: Callable, **kwargs) -> None:
        asked = listener(classify, inputs=photo, outputs=outputs, concurrency_id=CONCURRENCY_GROUP, **kwargs)
        asked.failure(None, None, outputs[-1], js=NO_ANSWER_JS)

    return ask


def _model_card(model: Predictor) -> None:
    with gr.Accordion("Model card", open=False):
        gr.Markdown(model_card_markdown(model))
        plot = confusion_matrix(model)  # the bytes the card's hash vouches for
        if plot is not None:
            gr.Image(plot, label="Validation confusion matrix", interactive=False, height=300, format="png")
