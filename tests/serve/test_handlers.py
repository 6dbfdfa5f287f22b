"""The page's handlers in-process: a skipped heatmap is said quietly, a refusal leaves no traceback, an overlay
is sent at page size, and the lean route takes a photo raw or as a form's file part."""

from __future__ import annotations

import asyncio
import io
import logging

import gradio as gr
import httpx
import pytest
from gradio.data_classes import FileData
from serve.helpers import audit_lines
from starlette.applications import Starlette

from conftest import bad_files, jpeg_bytes, skimage_photo
from huskyai.audit import AuditLog
from huskyai.serve.context import ServeContext
from huskyai.serve.handlers import EXPLAIN_SOURCE, classifier, explained, explainer
from huskyai.serve.photo_input import Upload
from huskyai.serve.rest import API_PATH, predict_route
from huskyai.settings import Settings


def photo_file(tmp_path, name: str = "coffee.jpg", data: bytes | None = None) -> FileData:
    path = tmp_path / name
    path.write_bytes(data if data is not None else jpeg_bytes(skimage_photo("coffee").resize((240, 160))))
    return FileData(path=str(path), orig_name=name)  # as gradio hands the photo box's payload over


def test_a_heatmap_over_its_limit_is_skipped_quietly_and_audited(tmp_path, shipped):
    """Before: the 7th photo in a minute raised "Slow down: at most 6 heatmaps a minute" as an error toast, and
    several stacked up ("Error (5)") over the verdict. Now the heatmap's box says it was skipped; no error."""
    log = tmp_path / "audit.jsonl"
    ctx = ServeContext(shipped, Settings(explain_rate_limit=1, explain_method="occlusion"), AuditLog(log))
    explain = explainer(ctx)
    photo = photo_file(tmp_path)
    overlay, method, verdict = explain(photo, None)
    assert overlay is not None and method == "occlusion" and verdict.startswith("Not a husky")
    overlay, said, verdict = explain(photo, None)  # the second within the minute: over the limit of 1
    assert overlay is None
    assert said.startswith("Heatmap skipped: at most 1 heatmaps a minute from one address; the verdict above is "
                           "complete.")
    assert verdict == gr.skip()  # the verdict on the page is left as it is
    assert [(e["source"], e["refused"]) for e in audit_lines(log)] == [
        (EXPLAIN_SOURCE, None), (EXPLAIN_SOURCE, "rate limit (explanations)")]


def test_a_refused_photo_is_one_message_and_no_traceback_in_the_servers_log(tmp_path, shipped, caplog):
    """Every refused upload printed a full traceback in the server's log: a refusal is gr.Error with
    print_exception off, which gradio's queue honours."""
    ctx = ServeContext(shipped, Settings(), AuditLog(tmp_path / "audit.jsonl"))
    with pytest.raises(gr.Error) as refused:
        classifier(ctx)(photo_file(tmp_path, "notes.jpg", bad_files()["text.jpg"]), None)
    assert "notes.jpg: not a supported image" in refused.value.message
    assert refused.value.print_exception is False
    with pytest.raises(gr.Error) as none:
        classifier(ctx)(None, None)
    assert none.value.print_exception is False and "Drop a photo" in none.value.message


@pytest.mark.slow  # serves the app
def test_a_refused_upload_prints_no_traceback_in_the_servers_log(tmp_path, shipped, capfd):
    """Before: every refused upload printed a full traceback in the server's log (gradio's queue prints one for
    any exception it is not told to keep quiet about). The app served in-process, refusing a text file."""
    from serve.helpers import served

    from huskyai.redteam.client import CallRefused, raw_predict

    with served(shipped, tmp_path) as server:
        capfd.readouterr()
        with pytest.raises(CallRefused, match="not a supported image"):
            raw_predict(server.url, bad_files()["text.jpg"], name="notes.jpg")
        assert raw_predict(server.url, jpeg_bytes(skimage_photo("coffee")))[1].startswith("Not a husky")
        printed = capfd.readouterr()
    assert "Traceback" not in printed.out + printed.err
    assert [e["refused"] is not None for e in server.audit()] == [True, False]  # the log has the refusal


@pytest.mark.slow  # an occlusion map of a phone-sized photo: several seconds
def test_a_large_photos_overlay_is_sent_at_page_size(shipped, tmp_path):
    """The page shows the overlay 360 px high: a phone photo's overlay is drawn at most DISPLAY_SIDE long."""
    from huskyai.explain.explanation import DISPLAY_SIDE

    big = skimage_photo("coffee").resize((2400, 1800))
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90)
    ctx = ServeContext(shipped, Settings(explain_method="occlusion"), AuditLog(tmp_path / "audit.jsonl"))
    overlay, method, verdict = explained(ctx, Upload(buf.getvalue(), "big.jpg"), "test")
    assert overlay.size == (DISPLAY_SIDE, DISPLAY_SIDE * 1800 // 2400) and method == "occlusion"
    assert verdict.startswith("Not a husky")


def lean(shipped, tmp_path, **settings):
    log = tmp_path / "audit.jsonl"
    app = Starlette(routes=[predict_route(ServeContext(shipped, Settings(**settings), AuditLog(log)))])

    async def post(**kwargs) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            return await c.post(API_PATH, **kwargs)

    return (lambda **kwargs: asyncio.run(post(**kwargs))), log


def test_the_lean_route_takes_a_photo_as_a_forms_file_part(shipped, tmp_path):
    """`curl -F file=@photo.jpg`, the usual upload form, got "not a supported image": the multipart body was
    read as the photo. One file part is now the photo, named by its file name."""
    post, log = lean(shipped, tmp_path)
    photo = jpeg_bytes(skimage_photo("chelsea"))
    raw = post(content=photo)
    form = post(files={"file": ("cat.jpg", photo, "image/jpeg")})
    assert raw.status_code == form.status_code == 200
    assert form.json() == raw.json() and form.json()["label"] == "not_husky"
    named = post(files={"photo": ("notes.jpg", bad_files()["text.jpg"], "image/jpeg")})
    assert named.status_code == 422 and named.json()["detail"].startswith("notes.jpg: not a supported image")
    assert [e["source"] for e in audit_lines(log)] == ["api"] * 3


FIELD_ONLY = b'--x\r\nContent-Disposition: form-data; name="name"\r\n\r\nrex\r\n--x--\r\n'


@pytest.mark.parametrize("form", ["a field, no file", "two files", "not a form at all"])
def test_a_form_without_exactly_one_file_is_told_how_to_send_a_photo(shipped, tmp_path, form):
    post, log = lean(shipped, tmp_path)
    photo = jpeg_bytes(skimage_photo("chelsea"))
    multipart = {"content-type": "multipart/form-data; boundary=x"}
    if form == "two files":
        response = post(files=[("a", ("a.jpg", photo, "image/jpeg")), ("b", ("b.jpg", photo, "image/jpeg"))])
    elif form == "a field, no file":
        response = post(content=FIELD_ONLY, headers=multipart)
    else:
        response = post(content=b"garbage, no boundary anywhere", headers=multipart)
    assert response.status_code == 400, response.text
    assert "curl --data-binary @photo.jpg" in response.json()["detail"]
    assert "curl -F file=@photo.jpg" in response.json()["detail"]
    assert audit_lines(log)[-1]["refused"].startswith("a multipart form")


def test_a_photo_over_the_limit_in_a_form_is_refused_at_the_limit(shipped, tmp_path):
    """The middleware leaves a form's headers room above the upload limit; the photo itself is held to it."""
    post, log = lean(shipped, tmp_path, upload_limit=1024 * 1024)
    response = post(files={"file": ("big.jpg", b"\xff\xd8\xff" + bytes(1024 * 1024), "image/jpeg")})
    assert response.status_code == 413
    assert response.json()["detail"] == "The request is too large: a photo may be at most 1 MB."
    assert audit_lines(log)[-1]["refused"].startswith("request body too large")


def test_no_handler_logs_at_error_level_for_a_refusal(tmp_path, shipped, caplog):
    ctx = ServeContext(shipped, Settings(), AuditLog(tmp_path / "audit.jsonl"))
    with caplog.at_level(logging.WARNING), pytest.raises(gr.Error):
        classifier(ctx)(photo_file(tmp_path, "empty.jpg", b""), None)
    assert not caplog.records
