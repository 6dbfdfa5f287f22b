"""The Gradio page and API: drop a photo, get "Husky, 97%".

Uploads reach huskyai's own hardened decoder as raw bytes (gradio's stock Image component would
decode them with PIL first, and a bad file would surface as a bare "Error"). Uploads are deleted
by huskyai.uploads on a timer, never on read: the page's preview and a second click need the file.
Limits that keep one client from starving the others run before the queue, in huskyai.middleware.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import html
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

from .audit import AuditLog, audited_predict, model_trust
from .images import InvalidImageError
from .predictor import Predictor
from .serving import UPLOAD_LIMIT_BYTES, Settings, client_address
from .uploads import UploadRegistry

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
CONCURRENCY_GROUP = "predict"  # every listener that predicts shares one limit (gradio's is per listener)
NO_ANSWER_JS = "() => 'No answer'"  # runs in the browser only
CSS = "#verdict p { font-size: 2rem; font-weight: 700; margin: 0.4em 0; }"


@dataclass(frozen=True)
class Upload:
    data: bytes | None
    name: str
    problem: str | None = None  # why the photo cannot be read, for the person (already HTML-escaped)


class PhotoInput(gr.Image):
    """gr.Image on the page; on the server it hands over the uploaded bytes, undecoded."""

    uploads: UploadRegistry | None = None  # set by build_demo: uploads are noted as used, never deleted here
    limit: int = UPLOAD_LIMIT_BYTES

    def get_block_name(self) -> str:
        return "image"  # keep the stock image frontend

    def preprocess(self, payload) -> Upload | None:
        if payload is None:
            return None
        name = Path(payload.orig_name or "upload").name
        shown = html.escape(name)
        too_large = f"{shown}: the image is larger than the upload limit of {self.limit // (1024 * 1024)} MB"
        if payload.url and payload.url.startswith("data:"):  # pasted or webcam images may arrive inline
            encoded = payload.url.split(",", 1)[-1]
            if len(encoded) > math.ceil(self.limit / 3) * 4:  # checked before decoding anything
                return Upload(None, name, too_large)
            try:
                data = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                return Upload(None, name, f"{shown}: the inline image is not valid base64")
            return Upload(data, name) if len(data) <= self.limit else Upload(None, name, too_large)
        if payload.path is None:
            return None
        path = Path(payload.path)
        try:
            if path.stat().st_size > self.limit:
                return Upload(None, name, too_large)
            data = path.read_bytes()
        except OSError:
            return Upload(None, name, f"{shown}: the upload is no longer on the server; upload it again")
        if self.uploads is not None:
            self.uploads.touch(path)  # kept a while longer for a second question
        return Upload(data, name)


def verdict(pred, positive: str) -> str:
    is_pos = pred.label == positive
    confidence = pred.positive_probability if is_pos else 1 - pred.positive_probability
    title = positive.replace("_", " ").capitalize() if is_pos else f"Not a {positive.replace('_', ' ')}"
    return f"{title}, {confidence:.0%}"


def artifact(model: Predictor, name: str) -> bytes | None:
    """The verified bytes of an extra export file the model card lists, or None.

    ``Predictor.artifact`` where the predictor has it; otherwise the file is read once here and
    its sha256 compared with the card's (an unlisted or mismatching file gives None)."""
    if hasattr(model, "artifact"):
        return model.artifact(name)
    expected = model.card.get("files", {}).get(name)
    if not isinstance(expected, str):
        return None
    try:
        data = (Path(model.export_dir) / name).read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == expected else None


def _text(value) -> str:
    """Card text for Markdown, with HTML markup neutralised (quotes may stay: this is not an attribute)."""
    return html.escape(str(value), quote=False)


def _counts(counts) -> str | None:
    """'551 not_husky, 63 husky' from a card's counts; None unless every count is a whole number."""
    if not isinstance(counts, dict) or not counts:
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts.values()):
        return None
    return ", ".join(f"{n} {_text(c)}" for c, n in counts.items())


def training_lines(training: dict) -> list[str]:
    """What the model was trained on, as the card says: the holdout is never counted as training."""
    trained = _counts(training.get("counts"))
    validated = _counts(training.get("validation_counts"))
    held = _counts(training.get("holdout_counts"))
    fingerprint = _text(str(training.get("data_fingerprint", "?"))[:16])
    if trained is None:
        return []
    line = f"**Trained on:** {trained} photos"
    if validated:
        line += f"; validated on {validated}"
    if held:
        line += f"; **held out:** {held}, never trained on"
    elif training.get("holdout_files"):  # older cards counted the held-out photos in
        line = (f"**Photos:** {trained}, of which {len(training['holdout_files'])} were held out "
                "and never trained on")
    return [line + f" (data fingerprint `{fingerprint}`)."]


def model_card_markdown(model: Predictor) -> str:
    card = model.card
    lines = [
        f"**Architecture:** `{_text(card['arch'])}` ({int(card['input_size'])} px), "
        "ImageNet-pretrained, with a husky head.",
        *training_lines(card.get("training", {})),
    ]
    metrics = dict(card.get("metrics", {}))
    cv = metrics.pop("cv", None)
    for split, m in metrics.items():
        lines.append(f"**{_text(split.capitalize())}** ({int(m['n'])} photos): accuracy {m['accuracy']:.3f}, "
                     f"precision {m['precision']:.3f}, recall {m['recall']:.3f}, F1 {m['f1']:.3f}.")
    if isinstance(cv, dict):
        lines += cv_lines(cv)
    lines += redteam_lines(model)
    lines.append(f"**Model sha256:** `{_text(model.model_sha256)}`")
    lines.append(f"**Verified:** {_text(model_trust(model))}.")
    lines.append(f"**Created:** {_text(card.get('created', '?'))}.")
    return "\n\n".join(lines)


def cv_lines(cv: dict) -> list[str]:
    """Repeated cross-validation from the card, with its 95% intervals, one line per source."""
    out = []
    for part, m in cv.items():
        if not isinstance(m, dict):
            continue
        try:
            cells = ", ".join(f"{k} {_number(m[k]['mean']):.3f} [{_number(m[k]['ci95'][0]):.3f}, "
                              f"{_number(m[k]['ci95'][1]):.3f}]" for k in ("accuracy", "precision", "recall", "f1"))
            out.append(f"**Cross-validation, {_text(part)}** ({int(_number(m['n']))} photos, "
                       f"{int(_number(cv.get('repeats', 1)))} x 5 folds, 95% intervals): {cells}.")
        except (KeyError, TypeError, IndexError):
            continue
    return out


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError("not a number")
    return float(value)


def _flag(value) -> bool:
    if not isinstance(value, bool):
        raise TypeError("not a yes/no")
    return value


def redteam_lines(model: Predictor) -> list[str]:
    """Headline numbers of the red-team report, only when the model card lists it (redteam.json) and
    its hash matched: a report lying beside the export proves nothing and is never shown. Only numbers
    and yes/no values are rendered, so no text from the file reaches the page."""
    data = artifact(model, "redteam.json")
    if data is None:
        return []
    try:
        s = json.loads(data)
        weights = model.card.get("files", {}).get("model.safetensors")
        if "weights_sha256" in s and s["weights_sha256"] != weights:
            return []  # listed, but made for other weights
        pgd = ", ".join(f"{k}: {_number(v):.2f}" for k, v in s["pgd_accuracy"].items()
                        if re.fullmatch(r"\d{1,3}/\d{1,3}", str(k)))
        return [f"**Red-team report** (listed in the model card, hash checked): junk images called "
                f"{_text(model.positive)} {_number(s['junk_false_positive_rate']):.1%}; accuracy clean "
                f"{_number(s['clean_accuracy']):.2f}, under PGD {pgd or 'not measured'}; black-box attack success "
                f"{_number(s['query_success_rate']):.0%} (median {_number(s['query_median_queries']):.0f} queries); "
                f"scaling attack defeated: {'yes' if _flag(s['scaling_attack_defeated']) else 'no'}; "
                f"tampered files refused: {'yes' if _flag(s['tamper_all_refused']) else 'no'}."]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


def request_client(request: gr.Request | None, trusted_hops: int) -> str:
    """The address a gradio request is charged to (the same rule as the middleware's)."""
    if request is None:
        return "unknown"
    headers = request.headers
    forwarded = headers.getlist("x-forwarded-for") if hasattr(headers, "getlist") else \
        [headers.get("x-forwarded-for") or ""]
    return client_address(request.client.host if request.client else None, forwarded, trusted_hops)


def build_demo(model: Predictor, settings: Settings | None = None, audit: AuditLog | None = None,
               uploads: UploadRegistry | None = None) -> gr.Blocks:
    settings = settings or Settings()
    audit = audit or AuditLog()
    positive = model.positive
    trust = model_trust(model)

    def classify(upload: Upload | None, request: gr.Request) -> tuple[dict[str, float], str]:
        if upload is None:
            raise gr.Error("Drop a photo on the image box first.")
        client = audit.client_id(request_client(request, settings.trusted_proxy_hops))
        if upload.problem is not None:
            audit.record(source="app", client=client, data=None, model_sha256=model.model_sha256, trust=trust,
                         latency_ms=0.0, refused=html.unescape(upload.problem))
            raise gr.Error(upload.problem)
        try:
            pred = audited_predict(model, upload.data, name=upload.name, source="app", client=client, log=audit)
        except InvalidImageError as err:
            raise gr.Error(html.escape(str(err))) from None  # gradio renders it as HTML; names are the sender's
        return pred.scores, verdict(pred, positive)

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
        examples = sorted(EXAMPLES_DIR.glob("*.jpg"))
        if examples:  # a click answers at once, like an upload
            gallery = gr.Examples([[str(p)] for p in examples], inputs=photo, cache_examples=False,
                                  api_visibility="private", label="Examples (scikit-image photos)")
            asked = gallery.load_input_event.then(classify, inputs=photo, outputs=[scores, answer],
                                                  api_visibility="private", concurrency_id=CONCURRENCY_GROUP)
            asked.failure(None, None, answer, js=NO_ANSWER_JS)
        with gr.Accordion("Model card", open=False):
            gr.Markdown(model_card_markdown(model))
            plot = artifact(model, "confusion_matrix.png")  # the bytes the card's hash vouches for
            if plot is not None:
                with contextlib.suppress(OSError, ValueError, Image.DecompressionBombError):
                    gr.Image(Image.open(io.BytesIO(plot), formats=["PNG"]), label="Validation confusion matrix",
                             interactive=False, height=300, format="png")
        # the button is the public API (/predict); a fresh upload answers at once, privately
        asked = button.click(classify, inputs=photo, outputs=[scores, answer], api_name="predict",
                             concurrency_id=CONCURRENCY_GROUP)
        asked.failure(None, None, answer, js=NO_ANSWER_JS)  # never the previous photo's verdict under a new error
        asked = photo.upload(classify, inputs=photo, outputs=[scores, answer], api_visibility="private",
                             concurrency_id=CONCURRENCY_GROUP)
        asked.failure(None, None, answer, js=NO_ANSWER_JS)
    # api_open=False: the REST route /run/predict would skip the queue and its concurrency limit
    demo.queue(default_concurrency_limit=2, max_size=64, api_open=False)
    return demo


def _kept_files(demo: gr.Blocks) -> Callable[[], set[str]]:
    """The files the app itself placed in gradio's cache (examples, the card's plot): never deleted."""
    def kept() -> set[str]:
        return {p for block in list(demo.blocks.values()) for p in list(getattr(block, "keep_in_cache", ()))}
    return kept


def _queued_for(demo: gr.Blocks, trusted_hops: int) -> Callable[[str], int]:
    """How many events an address has waiting or running in gradio's queue."""
    def count(client: str) -> int:
        events = list(getattr(demo._queue, "event_ids_to_events", {}).values())
        return sum(1 for e in events if request_client(e.request, trusted_hops) == client)
    return count


def launch(model: Predictor, settings: Settings | None = None, *, host: str | None = None,
           port: int | None = None) -> None:
    """Serve ``model`` with the fairness middleware and the upload sweeper, until interrupted.

    Start-up goes through :func:`huskyai.serving.serve`; ``host`` and ``port`` remain for callers of
    the earlier ``launch(host=..., port=..., model=...)``."""
    import signal

    from fastapi.middleware import Middleware
    from gradio.utils import get_upload_folder

    from .middleware import FairServing
    from .ratelimit import RateLimiter

    settings = settings or Settings.from_env(host=host, port=port)
    audit = AuditLog()
    uploads = UploadRegistry(get_upload_folder(), ttl=settings.upload_ttl,
                             unread_ttl=min(60.0, settings.upload_ttl))
    demo = build_demo(model, settings, audit, uploads)
    uploads._protected = _kept_files(demo)
    trust = model_trust(model)

    def on_refusal(address: str, reason: str) -> None:
        audit.record(source="app", client=audit.client_id(address), data=None, model_sha256=model.model_sha256,
                     trust=trust, latency_ms=0.0, refused=reason)

    fair = Middleware(FairServing, upload_limit=settings.upload_limit, max_in_flight=settings.max_in_flight,
                      trusted_proxy_hops=settings.trusted_proxy_hops,
                      predictions=RateLimiter(settings.rate_limit), uploads_limiter=RateLimiter(settings.rate_limit),
                      uploads=uploads, queued_for=_queued_for(demo, settings.trusted_proxy_hops),
                      on_refusal=on_refusal)

    @contextlib.asynccontextmanager
    async def sweep_uploads(app):
        import asyncio

        import anyio

        async def every_few_seconds() -> None:
            while True:
                await asyncio.sleep(max(1.0, min(15.0, settings.upload_ttl / 3)))
                await anyio.to_thread.run_sync(uploads.sweep)

        await anyio.to_thread.run_sync(uploads.sweep_orphans)  # left by a run that was killed
        task = asyncio.create_task(every_few_seconds())
        try:
            yield
        finally:
            task.cancel()
            uploads.sweep(everything=True)

    # X-Forwarded-For is interpreted by huskyai (HUSKYAI_TRUST_PROXY), never by uvicorn, whose default
    # trusts any header sent from 127.0.0.1 and would let a local caller pick its own address
    import os

    os.environ["FORWARDED_ALLOW_IPS"] = ""
    signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C: the server closes and uploads are swept
    try:
        demo.launch(
            server_name=settings.host,
            server_port=settings.port,
            max_file_size=settings.upload_limit,
            enable_monitoring=False,
            show_error=False,
            ssr_mode=False,
            run_history=False,  # it would keep people's photos in the browser and offer to re-send them
            # gradio keeps ~25 KB of per-session state, and every API call is a session of its own: bounded
            # here it levels off at ~25 MB instead of growing to ~250 MB (its default keeps 10,000)
            state_session_capacity=1000,
            css=CSS,
            app_kwargs={"middleware": [fair], "lifespan": sweep_uploads},
        )
    finally:
        uploads.sweep(everything=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
