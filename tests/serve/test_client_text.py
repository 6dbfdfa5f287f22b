"""Client text bounded once at every door: a 1 MB file name or ?name= reaches no message and no audit line
at length (huskyai.clienttext), and the audit log bounds every line on its own (huskyai.audit)."""

from __future__ import annotations

import json
import time

import pytest

from conftest import bad_files, jpeg_bytes, skimage_photo
from huskyai.audit import LINE_CAP, AuditLog
from huskyai.clienttext import ELLIPSIS, client_text, one_line

HUGE = "A" * 1_000_000 + ".jpg"  # one request carried a name this size (and 13 MB ones exist)


def lines(path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def test_a_huge_name_is_cut_to_the_limit_with_a_visible_ellipsis_in_bounded_time():
    huge = HUGE * 13
    started = time.thread_time()  # this thread's work, whatever else the machine runs
    for _ in range(100):
        name = client_text(huge)
    assert time.thread_time() - started < 0.5  # the work depends on the limit, not on the name's length
    assert len(name) == 120 and name.endswith(ELLIPSIS) and name.startswith("AAAA")
    assert client_text("cat.jpg") == "cat.jpg" and client_text("x" * 120) == "x" * 120  # short names as sent
    assert client_text("x" * 121) == "x" * 119 + ELLIPSIS


@pytest.mark.parametrize("sent,kept", [
    ("../../home/me/.ssh/id_rsa", "id_rsa"),  # path parts go: a name is its last component
    ("C:\\Users\\me\\Pictures\\rex.jpg", "rex.jpg"),
    ('rex.jpg\n{"refused":null,"label":"husky"}', 'rex.jpg {"refused":null,"label":"husky"}'),  # no new line
    ("rex\r\n\t.jpg", "rex .jpg"),
    ("gpj.\u202eexe", "gpj.exe"),  # a right-to-left override would make the name read backwards
    ("re\u200bx\x00.jpg", "rex.jpg"),  # zero-width space and NUL
    ("rex\ud800.jpg", "rex.jpg"),  # a lone surrogate cannot be written as UTF-8 at all
    ("", "photo"), (None, "photo"), ("dir/", "photo"), ("\x00\x01", "photo"),
    (b"caf\xe9.jpg", "caf\xe9.jpg"),  # bytes (a header) as latin-1
])
def test_names_are_one_printable_line_of_their_last_component(sent, kept):
    name = client_text(sent)
    assert name == kept
    name.encode("utf-8")  # writable to a UTF-8 log


def test_one_line_keeps_paths_and_bounds_reasons():
    reason = "rate limit (predictions): /gradio_api/upload"
    assert one_line(reason, 200) == reason
    assert one_line("a\nb", 10) == "a b" and len(one_line("b" * 5000, 600)) == 600


def test_every_audit_line_is_capped_and_stays_valid_json(tmp_path):
    """A refusal reason, a source, a client, a trust text of a megabyte each (in any script, escaped as JSON):
    the line is at most LINE_CAP bytes and parses."""
    log = AuditLog(tmp_path / "audit.jsonl")
    for text in ("A" * 1_000_000, "\u00e9" * 1_000_000, "\U0001f436\n" * 300_000, '"\\' * 500_000):
        for n in range(2):  # a client of its own each, so no line is summarised away
            log.record(source=text, client=f"ip:{len(text)}-{n}-{text[:1]}", data=None, model_sha256=text,
                       latency_ms=1.0, refused=text, trust=text)
    written = lines(tmp_path / "audit.jsonl")
    assert len(written) == 8
    for line in written:
        assert len(line.encode("utf-8")) + 1 <= LINE_CAP
        entry = json.loads(line)
        assert entry["refused"].endswith(ELLIPSIS) or entry.get("truncated")


def test_the_lean_route_bounds_name(tmp_path, shipped):
    """?name= as long as a URL can be (60 KB; uvicorn takes 16 KB of headers), in-process through huskyai.serve.rest's
    route: the 422 message and the audit line carry the name as one line cut to 120 characters (the route cut
    it, but let newlines and control characters through)."""
    import httpx
    from starlette.applications import Starlette

    from huskyai.serve.context import ServeContext
    from huskyai.serve.rest import API_PATH, predict_route
    from huskyai.settings import Settings

    log = AuditLog(tmp_path / "audit.jsonl")
    app = Starlette(routes=[predict_route(ServeContext(shipped, Settings(), log))])

    async def ask(name: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            return await c.post(API_PATH, params={"name": name}, content=bad_files()["text.jpg"])

    import asyncio

    response = asyncio.run(ask("x\n" + "A" * 60_000))
    assert response.status_code == 422
    message = response.json()["detail"]
    assert message.startswith("x " + "A" * 117 + ELLIPSIS + ": ") and "not a supported image" in message
    (line,) = lines(tmp_path / "audit.jsonl")
    assert len(line) < LINE_CAP and json.loads(line)["refused"] == message
    answered = asyncio.run(ask("coffee.jpg"))  # and photos are still answered
    assert answered.status_code == 422 and answered.json()["detail"].startswith("coffee.jpg: ")


def test_the_photo_box_bounds_the_file_name_for_the_page_and_gradios_api(tmp_path, shipped):
    """gradio hands the photo box the FileData a request sent, orig_name untouched: the box bounds it, so the
    handler's message and the audit line (a refusal for an unreadable photo, or for one over the limit) carry
    the bounded name."""
    import gradio as gr
    from gradio.data_classes import FileData

    from huskyai.serve.context import ServeContext
    from huskyai.serve.handlers import classifier
    from huskyai.serve.photo_input import read_upload
    from huskyai.settings import Settings

    log = AuditLog(tmp_path / "audit.jsonl")
    text, big = tmp_path / "notes.jpg", tmp_path / "big.jpg"
    text.write_bytes(bad_files()["text.jpg"])
    big.write_bytes(jpeg_bytes(skimage_photo("coffee")))
    limit = 1000  # the coffee photo is over it
    classify = classifier(ServeContext(shipped, Settings(upload_limit=limit), log))
    bounded = "A" * 119 + ELLIPSIS
    for path, said in ((text, "not a supported image"), (big, "larger than the upload limit")):
        payload = FileData(path=str(path), orig_name="<b>\n" + HUGE)  # as gradio hands it to the handler
        assert read_upload(payload, limit).name == "<b> " + "A" * 115 + ELLIPSIS
        with pytest.raises(gr.Error) as refused:
            classify(payload, None)
        assert refused.value.message.startswith("&lt;b&gt; AAAA") and said in refused.value.message
        assert len(refused.value.message) < 300
    written = lines(tmp_path / "audit.jsonl")
    assert len(written) == 2 and all(len(line) < LINE_CAP for line in written)
    assert all(json.loads(line)["refused"].startswith("<b> AAAA") for line in written)
    assert bounded not in "".join(written)  # the name was cut at 120 characters, the "<b> " included
