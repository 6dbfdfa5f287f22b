"""The Gradio page and API: drop a photo, get "Husky, 97%".

Uploads reach huskyai's own hardened decoder as raw bytes (gradio's stock Image component would
decode them with PIL first, and a bad file would surface as a bare "Error"), and each upload is
deleted from gradio's cache as soon as it has been read.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from .audit import AuditLog, audited_predict
from .images import MAX_FILE_BYTES, InvalidImageError
from .predictor import Predictor, load
from .ratelimit import RateLimiter

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
UPLOAD_LIMIT = "10mb"


@dataclass(frozen=True)
class Upload:
    data: bytes
    name: str


class PhotoInput(gr.Image):
    """gr.Image on the page; on the server it hands over the uploaded bytes, undecoded."""

    def get_block_name(self) -> str:
        return "image"  # keep the stock image frontend

    def preprocess(self, payload) -> Upload | None:
        if payload is None:
            return None
        name = Path(payload.orig_name or "upload").name
        if payload.url and payload.url.startswith("data:"):  # pasted or webcam images may arrive inline
            encoded = payload.url.split(",", 1)[-1]
            if len(encoded) > MAX_FILE_BYTES * 4 // 3 + 4:
                raise gr.Error(f"{html.escape(name)}: the image is larger than the upload limit")
            return Upload(base64.b64decode(encoded), name)
        if payload.path is None:
            return None
        path = Path(payload.path)
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise gr.Error(f"{html.escape(name)}: the file is larger than the upload limit")
            data = path.read_bytes()
        except OSError:
            raise gr.Error(f"{html.escape(name)}: the upload is no longer on the server; upload it again") from None
        if _is_disposable_upload(path, self) and not is_example(data):
            path.unlink(missing_ok=True)  # uploads are not kept after the answer
        return Upload(data, name)


@functools.cache
def _example_fingerprints() -> dict[int, frozenset[str]]:
    found: dict[int, set[str]] = {}
    for p in EXAMPLES_DIR.glob("*.jpg"):
        data = p.read_bytes()
        found.setdefault(len(data), set()).add(hashlib.sha256(data).hexdigest())
    return {size: frozenset(hashes) for size, hashes in found.items()}


def is_example(data: bytes) -> bool:
    """True for an example photo, which gradio hands over from its cache just like an upload
    (hashed only when the size matches: uploads are on the hot path)."""
    hashes = _example_fingerprints().get(len(data))
    return bool(hashes) and hashlib.sha256(data).hexdigest() in hashes


def _is_disposable_upload(path: Path, component: gr.components.Component) -> bool:
    """True for a user's upload in gradio's cache; never for example photos or files elsewhere."""
    cache = Path(component.GRADIO_CACHE).resolve()
    resolved = path.resolve()
    return cache in resolved.parents and str(path) not in component.keep_in_cache \
        and str(resolved) not in component.keep_in_cache


def verdict(pred, positive: str) -> str:
    is_pos = pred.label == positive
    confidence = pred.probability if is_pos else 1 - pred.probability
    title = positive.replace("_", " ").capitalize() if is_pos else f"Not a {positive.replace('_', ' ')}"
    return f"{title}, {confidence:.0%}"


def model_card_markdown(model: Predictor) -> str:
    card = model.card
    training = card.get("training", {})
    lines = [
        f"**Architecture:** `{card['arch']}` ({card['input_size']} px), ImageNet-pretrained, with a husky head.",
        f"**Trained on:** {', '.join(f'{n} {c}' for c, n in training.get('counts', {}).items())} photos "
        f"(data fingerprint `{training.get('data_fingerprint', '?')[:16]}`).",
    ]
    for split, m in card.get("metrics", {}).items():
        lines.append(f"**{split.capitalize()}** ({m['n']} photos): accuracy {m['accuracy']:.3f}, "
                     f"precision {m['precision']:.3f}, recall {m['recall']:.3f}, F1 {m['f1']:.3f}.")
    lines += redteam_lines(model)
    lines.append(f"**Model sha256:** `{model.model_sha256}`")
    lines.append(f"**Created:** {card.get('created', '?')}; verified against its card when loaded.")
    return "\n\n".join(lines)


def client_address(request: gr.Request | None) -> str:
    """The caller's IP; behind a proxy (Hugging Face Spaces, or HUSKYAI_TRUST_PROXY=1) the first
    X-Forwarded-For hop, which a direct caller could forge, so it is trusted only there."""
    if request is None:
        return "unknown"
    if os.environ.get("HUSKYAI_TRUST_PROXY") == "1" or os.environ.get("SPACE_ID"):
        forwarded = (request.headers.get("x-forwarded-for") or "").split(",")[0].strip()
        if forwarded:
            return forwarded
    return request.client.host if request.client else "unknown"


def redteam_lines(model: Predictor) -> list[str]:
    """Headline numbers of the latest robustness report beside the model (report/summary.json),
    shown only when it was made for this very model."""
    path = model.export_dir.resolve().parent / "report" / "summary.json"
    try:
        s = json.loads(path.read_text())
        if s.get("model_sha256") != model.model_sha256:
            return []
        pgd = ", ".join(f"{k}: {v:.2f}" for k, v in s["pgd_accuracy"].items())
        return [f"**Red-team report** ({path.parent.name}/): junk images called {model.positive} "
                f"{s['junk_false_positive_rate']:.1%}; accuracy clean {s['clean_accuracy']:.2f}, under PGD {pgd}; "
                f"black-box attack success {s['query_success_rate']:.0%} (median {s['query_median_queries']} "
                f"queries); scaling attack defeated: {s['scaling_attack_defeated']}; "
                f"tampered files refused: {s['tamper_all_refused']}."]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def build_demo(model: Predictor | None = None, audit: AuditLog | None = None,
               limiter: RateLimiter | None = None) -> gr.Blocks:
    model = model or load(os.environ.get("HUSKYAI_MODEL") or None)
    audit = audit or AuditLog()
    limiter = limiter or RateLimiter(int(os.environ.get("HUSKYAI_RATE_LIMIT", "30")))
    positive = model.positive

    def classify(upload: Upload | None, request: gr.Request) -> tuple[dict[str, float], str]:
        if upload is None:
            raise gr.Error("Drop a photo on the image box first.")
        client = audit.client_id(client_address(request))
        wait = limiter.check(client)
        if wait is not None:
            audit.record(source="app", client=client, data=upload.data, model_sha256=model.model_sha256,
                         latency_ms=0.0, refused="rate limit")
            raise gr.Error(f"Slow down: at most {limiter.per_minute} photos a minute from one address. "
                           f"Try again in {math.ceil(wait)} s.", title="Too many requests")
        try:
            pred = audited_predict(model, upload.data, name=upload.name, source="app", client=client, log=audit)
        except InvalidImageError as err:
            raise gr.Error(html.escape(str(err))) from None  # gradio renders it as HTML; names are the sender's
        return pred.scores, verdict(pred, positive)

    with gr.Blocks(title="Husky AI", analytics_enabled=False, delete_cache=(300, 300)) as demo:
        gr.Markdown("# Husky AI\nIs this a husky? Drop a photo, paste one, or use your webcam.")
        with gr.Row(equal_height=False):
            with gr.Column(min_width=280):
                photo = PhotoInput(label="Photo", sources=["upload", "clipboard", "webcam"], height=360)
                button = gr.Button("Is it a husky?", variant="primary")
            with gr.Column(min_width=280):
                answer = gr.Markdown("Waiting for a photo", elem_id="verdict")
                scores = gr.Label(label="Confidence", num_top_classes=len(model.classes))
        examples = sorted(EXAMPLES_DIR.glob("*.jpg"))
        if examples:  # a click answers at once, like an upload
            gr.Examples([[str(p)] for p in examples], inputs=photo, outputs=[scores, answer], fn=classify,
                        run_on_click=True, cache_examples=False, api_visibility="private",
                        label="Examples (scikit-image photos)")
        with gr.Accordion("Model card", open=False):
            gr.Markdown(model_card_markdown(model))
            plot = model.export_dir / "confusion_matrix.png"
            if plot.is_file():
                gr.Image(str(plot), label="Validation confusion matrix", interactive=False, height=300)
        # the button is the public API (/predict); a fresh upload answers at once, privately
        button.click(classify, inputs=photo, outputs=[scores, answer], api_name="predict")
        photo.upload(classify, inputs=photo, outputs=[scores, answer], api_visibility="private")
    demo.queue(default_concurrency_limit=2, max_size=64)
    return demo


CSS = "#verdict p { font-size: 2rem; font-weight: 700; margin: 0.4em 0; }"


def launch(model_dir: str | None = None, host: str | None = None, port: int | None = None,
           model: Predictor | None = None) -> None:
    demo = build_demo(model or load(model_dir or os.environ.get("HUSKYAI_MODEL") or None))
    demo.launch(
        server_name=host or os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=port or int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        max_file_size=UPLOAD_LIMIT,
        enable_monitoring=False,
        show_error=False,
        ssr_mode=False,
        css=CSS,
    )
