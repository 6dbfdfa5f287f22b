"""Repudiation and flooding: every answer leaves one audit line, and one address cannot flood.

The app is served in-process (tests/serve/helpers.served: the same app as ``python app.py``, uvicorn in a thread)
and spoken to over loopback HTTP from several 127.x addresses; upload expiry is driven by an injected clock."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from serve.helpers import audit_lines as lines
from serve.helpers import served, wait_until

from conftest import bad_files, jpeg_bytes, skimage_photo
from huskyai.audit import LINE_CAP, REFUSALS_PER_MINUTE, SUMMARY_SOURCE, AuditLog, audited_predict
from huskyai.errors import InvalidImageError
from huskyai.redteam.client import (
    CallRefused,
    call,
    call_with_path,
    client_from,
    file_input,
    inline_input,
    raw_predict,
    upload,
)
from huskyai.serve.limits.ratelimit import RateLimiter
from huskyai.serve.limits.store import LimitsStore

FIELDS = {"time", "source", "client", "image_sha256", "image_bytes", "image_format", "width", "height", "label",
          "probability", "refused", "latency_ms", "model_sha256", "trust", "replica"}


@pytest.fixture(scope="module")
def app_server(shipped, tmp_path_factory):
    """Generous limits: these tests send many requests from one address."""
    with served(shipped, tmp_path_factory.mktemp("app"), rate_limit=100_000, explain_rate_limit=100_000) as server:
        yield server


def no_image_on_disk(folder) -> None:
    """No file under ``folder`` starts like a JPEG, PNG, GIF, WebP or BMP."""
    magics = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF", b"BM")
    for path in folder.rglob("*"):
        if path.is_file():
            assert not path.read_bytes()[:4].startswith(magics), path


def test_one_well_formed_line_per_prediction(tmp_path, shipped):
    log = AuditLog(tmp_path / "audit.jsonl")
    photo = jpeg_bytes(skimage_photo("coffee"))
    pred = audited_predict(shipped, photo, name="coffee.jpg", source="cli", client="cli:test", log=log)
    (entry,) = lines(tmp_path / "audit.jsonl")
    assert set(entry) == FIELDS
    assert entry["label"] == pred.label and entry["probability"] == round(pred.positive_probability, 6)
    assert entry["image_format"] == "JPEG" and entry["image_bytes"] == len(photo)
    assert entry["width"] == 600 and entry["height"] == 400
    assert entry["model_sha256"] == shipped.model_sha256 and entry["refused"] is None
    assert entry["trust"] == shipped.trust
    assert entry["replica"] is None  # a log of no app replica (the CLI's) names none
    with pytest.raises(InvalidImageError):
        audited_predict(shipped, b"not an image", name="x.jpg", source="cli", client="cli:test", log=log)
    assert lines(tmp_path / "audit.jsonl")[1]["refused"].startswith("x.jpg: not a supported image")
    no_image_on_disk(tmp_path)


def test_client_ids_are_salted_and_stable(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    assert log.client_id("10.1.2.3") == log.client_id("10.1.2.3") != log.client_id("10.1.2.4")
    assert "10.1.2.3" not in log.client_id("10.1.2.3")
    assert AuditLog(tmp_path / "audit.jsonl").client_id("10.1.2.3") == log.client_id("10.1.2.3")  # salt kept
    assert AuditLog(tmp_path / "other.jsonl").client_id("10.1.2.3") != log.client_id("10.1.2.3")


def test_log_rotates_by_size(tmp_path, shipped):
    log = AuditLog(tmp_path / "audit.jsonl", max_bytes=2000, backups=2)
    for _ in range(20):
        audited_predict(shipped, jpeg_bytes(skimage_photo("rocket")), name="r.jpg", source="cli", client="c",
                        log=log)
    assert (tmp_path / "audit.jsonl.1").exists() and not (tmp_path / "audit.jsonl.3").exists()
    assert (tmp_path / "audit.jsonl").stat().st_size <= 2000


def test_cli_predict_writes_the_audit_log(tmp_path, cli):
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(jpeg_bytes(skimage_photo("chelsea")))
    log = tmp_path / "log" / "audit.jsonl"
    assert cli("predict", photo, env={"HUSKYAI_AUDIT_LOG": str(log)}).returncode == 0
    (entry,) = lines(log)
    assert entry["source"] == "cli" and entry["client"].startswith("cli:") and entry["label"] == "not_husky"


@pytest.mark.slow  # serves the app
def test_app_logs_each_answer_and_keeps_no_image(app_server):
    before = len(lines(app_server["audit_log"]))
    raw_predict(app_server["url"], jpeg_bytes(skimage_photo("astronaut")), name="astronaut_audit.jpg")
    new = lines(app_server["audit_log"])[before:]
    assert len(new) == 1 and new[0]["source"] == "app" and new[0]["client"].startswith("ip:")
    assert new[0]["trust"] and new[0]["model_sha256"]
    assert "127.0.0.1" not in app_server["audit_log"].read_text()
    for path in app_server["audit_log"].parent.glob("audit.jsonl*"):
        assert path.read_bytes()[:4] not in (b"\xff\xd8\xff\xe0", b"\x89PNG")


def test_rate_limiter_is_a_moving_window():
    """At most 3 in any 1 s, wherever the second starts: the 4th waits until the first leaves the window (a
    window fixed to the clock's seconds would often say less than 0.7 s)."""
    limiter = RateLimiter(per_minute=3, window=1)
    assert [limiter.check("a") for _ in range(3)] == [None, None, None]
    wait = limiter.check("a")
    assert wait is not None and 0.7 < wait <= 1.0
    assert limiter.check("b") is None  # another client has its own budget
    time.sleep(wait + 0.05)
    assert limiter.check("a") is None  # the first requests left the window
    assert RateLimiter(per_minute=0).check("a") is None  # 0: no limit


def test_budgets_of_one_store_are_kept_apart_by_name():
    store = LimitsStore()
    predictions, uploads = RateLimiter(1, store, name="predictions"), RateLimiter(1, store, name="uploads")
    assert (predictions.check("a"), uploads.check("a")) == (None, None)
    assert predictions.check("a") is not None and uploads.check("a") is not None


@pytest.mark.slow  # serves the app
def test_app_refuses_a_flood_from_one_address_but_not_others(tmp_path, shipped):
    photo = tmp_path / "coffee.jpg"
    photo.write_bytes(jpeg_bytes(skimage_photo("coffee")))
    with served(shipped, tmp_path, rate_limit=3) as server:
        with client_from("127.0.0.1") as c:
            for i in range(3):
                c.headers["x-forwarded-for"] = f"198.51.100.{i}"  # no proxy is trusted: the header is ignored
                assert raw_predict(server["url"], photo, client=c)[0]["label"] == "not_husky"
            c.headers["x-forwarded-for"] = "198.51.100.99"
            with pytest.raises(CallRefused, match="Slow down: at most 3 photos a minute"):
                raw_predict(server["url"], photo, client=c)
        with client_from("127.0.0.2") as other:
            assert raw_predict(server["url"], photo, client=other)[0]["label"] == "not_husky"
        refused = [e for e in lines(server["audit_log"]) if (e["refused"] or "").startswith("rate limit")]
        assert len(refused) == 1 and refused[0]["trust"]


MARKUP = "<img src=x onerror=alert(1)>.jpg"


@pytest.mark.parametrize("how,said", [
    ("uploaded", "not a supported image"),  # huskyai's decoder refuses it (handlers.classify escapes)
    ("inline", "not a supported image"),  # the same, from a data: URL
    ("inline_not_base64", "not valid base64"),  # the photo box refuses it (photo_input escapes)
])
@pytest.mark.slow  # serves the app
def test_error_messages_are_escaped(app_server, how, said):
    """gradio strips <> from the names of uploaded files, but passes on the name a call gives (orig_name)
    untouched, and renders error messages as HTML: every message that echoes the name must escape it."""
    import base64

    base = app_server["url"]
    text = bad_files()["text.jpg"]
    with client_from("127.0.0.1") as c:
        if how == "uploaded":
            item = file_input(upload(base, text, "notes.jpg", c), orig_name=MARKUP)
        elif how == "inline":
            item = inline_input("data:image/jpeg;base64," + base64.b64encode(text).decode(), MARKUP)
        else:
            item = inline_input("data:image/jpeg;base64,<script>", MARKUP)
        with pytest.raises(CallRefused) as refused:
            call(base, [item], client=c)
    message = str(refused.value)
    assert message.startswith("&lt;img src=x onerror=alert(1)&gt;.jpg: ") and said in message
    assert "<" not in message and ">" not in message


@pytest.mark.slow  # serves the app
def test_megabyte_file_names_reach_no_message_and_no_audit_line_at_length(tmp_path, shipped):
    """The attack as it was sent, through gradio's API and the lean route of a real server: a file name of a
    megabyte (gradio's FileData.orig_name, passed on untouched) wrote 4 MB to the log in one request, and seven
    requests rotated away the log and all its backups. Now every message and line carries it cut to 120
    characters, the refusals beyond a few a minute are one summary line, written at shutdown at the latest."""
    huge = "<i>\n" + "A" * 1_000_000 + ".jpg"
    text = bad_files()["text.jpg"]
    with served(shipped, tmp_path, rate_limit=1000, explain_rate_limit=1000) as server:
        base = server["url"]
        with client_from("127.0.0.80") as c:
            path = upload(base, text, "notes.jpg", c)
            for api in ("predict", "explain"):  # the button's verdict, and the heatmap that follows it
                with pytest.raises(CallRefused) as refused:
                    call(base, [file_input(path, orig_name=huge)], api, client=c)
                message = str(refused.value)
                assert message.startswith("&lt;i&gt; " + "A" * 115 + "\u2026: not a supported image"), message[:300]
                assert len(message) < 400
            lean = c.post(f"{base}api/v1/predict", params={"name": "\n" + "B" * 8000}, content=text)
            assert lean.status_code == 422 and lean.json()["detail"].startswith("B" * 119 + "\u2026: not a supported")
            for _ in range(8):  # refusals have no rate limit: these are counted, not written one by one
                assert c.post(f"{base}api/v1/predict", content=b"").status_code == 400
        before_shutdown = lines(server["audit_log"])
    written = lines(server["audit_log"])
    assert all(len(line) < LINE_CAP for line in server["audit_log"].read_text().splitlines())
    refused = [e for e in written if e["refused"] and e["source"] != SUMMARY_SOURCE]
    assert [e["source"] for e in refused] == ["app", "app-explain", "api", "api", "api"]  # REFUSALS_PER_MINUTE
    assert all(e["refused"].startswith("<i> AAAA") for e in refused[:2]) and len({e["client"] for e in refused}) == 1
    (summary,) = [e for e in written if e["source"] == SUMMARY_SOURCE]
    assert summary not in before_shutdown and summary["client"] == refused[0]["client"]
    assert summary["suppressed"] == 6 and summary["refused"].startswith("6 more refusals from client ip:")


# --- fair serving: each test is an attack the middleware (huskyai.serve.limits.middleware) stops -----------------

UPLOAD_TTL = 300  # seconds an answered upload is kept after its last use (the default); expiry is simulated


@pytest.fixture(scope="module")
def fair_app(shipped, tmp_path_factory):
    with served(shipped, tmp_path_factory.mktemp("fair"), rate_limit=1000, max_in_flight=2,
                upload_ttl=UPLOAD_TTL) as server:
        yield server


def raw_http(port: int, head: bytes, body: bytes = b"", close_after: bool = False) -> bytes:
    """Send bytes on a socket of our own (to announce sizes httpx would not) and read what comes back."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        if close_after:
            return b""
        try:
            return s.recv(4096)
        except OSError:
            return b""


@pytest.mark.slow  # serves the app
def test_a_queue_flood_from_one_address_does_not_starve_another(fair_app, tmp_path):
    """The attacker starts 200 predictions from 16 threads without reading any answer: before the fix
    they filled the 64-place queue and everyone else got HTTP 503."""
    from concurrent.futures import ThreadPoolExecutor

    base = fair_app["url"]
    photo = jpeg_bytes(skimage_photo("coffee"))
    with client_from("127.0.0.30") as attacker:
        path = upload(base, photo, client=attacker)
        payload = {"data": [file_input(path)]}
        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda _: attacker.post(f"{base}gradio_api/call/predict", json=payload).status_code,
                                  range(200)))
    assert codes.count(429) > 100 and set(codes) <= {200, 429}, codes
    with client_from("127.0.0.31") as honest:
        for _ in range(3):
            assert raw_predict(base, photo, client=honest)[0]["label"] == "not_husky"
    # each refusal is audited, but the log is not flooded: a few lines one by one, the rest counted in one
    # summary line when the minute closes (tests/test_audit_flood.py)
    refusals = [e for e in lines(fair_app["audit_log"]) if e["refused"] == "in-flight limit"]
    assert len(refusals) == REFUSALS_PER_MINUTE


@pytest.mark.slow  # serves the app
def test_one_address_has_one_prediction_in_the_queue_at_a_time(fair_app):
    """A second call from the same address waits for the first instead of taking a second worker:
    a client sending slow photos can hold one worker at most."""
    from concurrent.futures import ThreadPoolExecutor

    base = fair_app["url"]
    with client_from("127.0.0.37") as c:
        path = upload(base, jpeg_bytes(skimage_photo("astronaut")), client=c)
        with ThreadPoolExecutor(2) as pool:  # two at once: both answered, neither refused
            answers = list(pool.map(lambda _: call_with_path(base, path, client=c), range(2)))
    assert answers[0] == answers[1]


@pytest.mark.slow  # serves the app
def test_a_body_over_the_cap_is_refused_while_it_streams(fair_app):
    """400 MB of JSON used to be read and parsed (1.5 GB of memory) before it was refused."""
    import httpx

    base, port = fair_app["url"], int(fair_app["url"].rsplit(":", 1)[1].strip("/"))
    sent = [0]

    def body():
        for _ in range(400):
            sent[0] += 1
            yield b"[" + b" " * (1024 * 1024 - 1)  # 400 MB, no Content-Length: only counting can stop it

    with client_from("127.0.0.32") as c:
        try:
            status = c.post(f"{base}gradio_api/call/predict", content=body(),
                            headers={"content-type": "application/json"}).status_code
        except httpx.TransportError:
            status = None  # the server hung up mid-body: also a refusal
    assert status in (413, None) and sent[0] < 60, sent[0]
    # announced: refused from the headers, before a byte of the body is read
    reply = raw_http(port, b"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 400000000\r\n"
                           b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413")
    reasons = [e["refused"] for e in lines(fair_app["audit_log"]) if e["refused"]]
    assert any("while streaming" in r for r in reasons) and any("400000000 bytes announced" in r for r in reasons)


@pytest.mark.slow  # serves the app
def test_aborted_and_unread_uploads_are_swept(fair_app):
    """An upload cut off halfway, or never used, used to stay in gradio's cache for good."""
    base, port = fair_app["url"], int(fair_app["url"].rsplit(":", 1)[1].strip("/"))
    cache = Path(fair_app["cache"])
    head = (b"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
    part = b'--b\r\nContent-Disposition: form-data; name="files"; filename="half.jpg"\r\n\r\n' + b"\xff" * 1_000_000
    raw_http(port, head, part, close_after=True)
    assert wait_until(lambda: not [p for p in cache.glob("tmp*")], timeout=10)
    with client_from("127.0.0.33") as c:
        path = Path(upload(base, jpeg_bytes(skimage_photo("rocket")), "never_used.jpg", c))
    assert path.is_file()
    fair_app.sweep_after(59)
    assert path.is_file()  # an unread upload is kept a minute, for the page's preview and its first question
    fair_app.sweep_after(61)
    assert not path.exists()


@pytest.mark.slow  # serves the app
def test_a_second_predict_on_the_same_upload_answers_then_the_upload_expires(fair_app):
    base = fair_app["url"]
    with client_from("127.0.0.34") as c:
        path = upload(base, jpeg_bytes(skimage_photo("chelsea")), "asked_twice.jpg", c)
        first = call_with_path(base, path, client=c)
        second = call_with_path(base, path, client=c)  # the button pressed again after the upload's own answer
        assert first == second and first[1].startswith("Not a husky")
        fair_app.sweep_after(UPLOAD_TTL - 5)
        assert Path(path).is_file()  # kept after its last use, for another question
        fair_app.sweep_after(UPLOAD_TTL + 1)
        assert not Path(path).exists()
        with pytest.raises(CallRefused, match="no longer on the server; upload it again"):
            call_with_path(base, path, client=c)


def _plot_path(base: str) -> str:
    import httpx

    config = httpx.get(f"{base}config", timeout=10).json()
    (plot,) = [c["props"]["value"]["path"] for c in config["components"]
               if c.get("props", {}).get("label") == "Validation confusion matrix"]
    return plot


@pytest.mark.slow  # serves the app
def test_the_cached_plot_survives_a_predict_naming_it_and_an_upload_landing_on_it(fair_app):
    """A /predict naming the model card's cached plot used to delete it for everyone."""
    import httpx

    base = fair_app["url"]
    plot = _plot_path(base)
    original = httpx.get(f"{base}gradio_api/file={plot}", timeout=10)
    assert original.status_code == 200 and original.content[:4] == b"\x89PNG"
    with client_from("127.0.0.35") as c:
        call_with_path(base, plot, client=c)  # answered (a plot is not a husky); what matters is what follows
        same = upload(base, original.content, Path(plot).name, c)  # same bytes, same name: gradio's same path
        assert Path(same).resolve() == Path(plot).resolve()
        call_with_path(base, same, client=c)

    for later in (61, UPLOAD_TTL + 1, 10 * UPLOAD_TTL):  # every upload expired by then
        fair_app.sweep_after(later)
    assert Path(plot).is_file()
    assert httpx.get(f"{base}gradio_api/file={plot}", timeout=10).content == original.content


@pytest.mark.slow  # serves the app
def test_a_data_url_over_the_upload_limit_is_refused(fair_app):
    """Inline data: URLs skipped the 10 MB cap (20 MB got through)."""
    import base64

    big = base64.b64encode(b"\xff\xd8\xff" + b"\0" * (10 * 1024 * 1024 + 3000)).decode()
    with client_from("127.0.0.36") as c, pytest.raises(CallRefused) as refused:
        call(fair_app["url"], [inline_input("data:image/jpeg;base64," + big, "inline.jpg")], client=c)
    assert "larger than the upload limit of 10 MB" in str(refused.value)
    assert refused.value.status is None  # within the body cap: accepted, then the component's own check refused it
    assert any("inline.jpg: the image is larger" in (e["refused"] or "") for e in lines(fair_app["audit_log"]))


@pytest.mark.slow  # serves the app
def test_a_forged_forwarded_for_does_not_pick_the_bucket(tmp_path, shipped):
    """Behind one trusted proxy the client is the hop the proxy appended (the rightmost), not the first,
    which the client writes itself."""
    photo = jpeg_bytes(skimage_photo("coffee"))
    with served(shipped, tmp_path, rate_limit=2, trusted_proxy_hops=1) as server, \
            client_from("127.0.0.40") as proxy:
        for i in range(2):
            proxy.headers["x-forwarded-for"] = f"203.0.113.{i}, 127.0.0.41"  # forged first hop, real last hop
            raw_predict(server["url"], photo, client=proxy)
        proxy.headers["x-forwarded-for"] = "203.0.113.77, 127.0.0.41"
        with pytest.raises(CallRefused, match="Slow down"):
            raw_predict(server["url"], photo, client=proxy)
        proxy.headers["x-forwarded-for"] = "203.0.113.77, 127.0.0.42"  # someone else behind the same proxy
        assert raw_predict(server["url"], photo, client=proxy)[0]["label"] == "not_husky"


def test_client_address_takes_the_rightmost_untrusted_hop():
    from huskyai.serve.limits.clients import client_address

    assert client_address("10.0.0.1", ["1.1.1.1, 2.2.2.2"], 0) == "10.0.0.1"
    assert client_address("10.0.0.1", ["1.1.1.1, 2.2.2.2"], 1) == "2.2.2.2"
    assert client_address("10.0.0.1", ["1.1.1.1", "2.2.2.2, 3.3.3.3"], 2) == "2.2.2.2"
    assert client_address("10.0.0.1", [], 1) == "10.0.0.1"
    assert client_address("10.0.0.1", ["not-an-address"], 1) == "10.0.0.1"
