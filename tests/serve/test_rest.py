"""The lean route POST /api/v1/predict (huskyai.serve.rest), on the app served in-process on loopback
(tests/serve/helpers.served), spoken to in raw HTTP: the model's answer, clear refusals, and the same limits,
audit log and disclosure as gradio's API."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from serve.helpers import audit_lines as _lines
from serve.helpers import served

from conftest import bad_files, jpeg_bytes, skimage_photo
from huskyai.redteam.client import client_from

PATH = "api/v1/predict"


@pytest.fixture(scope="module")
def queued_app(shipped, tmp_path_factory):
    """The app with the engine queue on, so the route's predictions share engine calls."""
    with served(shipped, tmp_path_factory.mktemp("rest"), rate_limit=100_000, engine_batch=4, workers=4) as server:
        yield server


@pytest.fixture(scope="module")
def strict_app(shipped, tmp_path_factory):
    """Label-only answers, 3 predictions a minute and one request at a time per address."""
    with served(shipped, tmp_path_factory.mktemp("rest_strict"), rate_limit=3, max_in_flight=1,
                api_detail="label") as server:
        yield server


def post(server: dict, data: bytes, address: str = "127.0.0.1", name: str | None = None):
    with client_from(address) as http:
        return http.post(server["url"] + PATH, content=data, params={"name": name} if name else None,
                         headers={"content-type": "application/octet-stream"})


def audit_lines(server) -> list[dict]:
    return _lines(server["audit_log"])


@pytest.mark.slow  # serves the app
def test_photos_get_the_models_own_answer_through_the_engine_queue(queued_app, shipped):
    photos = [jpeg_bytes(skimage_photo(name)) for name in ("chelsea", "coffee", "astronaut", "rocket")] * 2
    with ThreadPoolExecutor(len(photos)) as pool:  # concurrent, from 8 addresses: the queue batches them
        answers = list(pool.map(lambda k: post(queued_app, photos[k], f"127.0.0.{40 + k}"), range(len(photos))))
    for photo, response in zip(photos, answers):
        assert response.status_code == 200, response.text
        expected = shipped.predict(photo)
        body = response.json()
        assert body["label"] == expected.label
        assert set(body["scores"]) == set(expected.scores)
        assert all(abs(body["scores"][c] - p) <= 1e-6 for c, p in expected.scores.items())
        assert body["verdict"].startswith("Husky" if expected.label == shipped.positive else "Not a husky")
    entries = [e for e in audit_lines(queued_app) if e["source"] == "api" and e["label"]]
    assert len(entries) >= len(photos) and entries[-1]["client"].startswith("ip:")
    assert "127.0.0" not in queued_app["audit_log"].read_text()  # pseudonyms only


@pytest.mark.slow  # serves the app
@pytest.mark.parametrize("name", sorted(bad_files()))
def test_a_bad_file_gets_a_4xx_with_a_message_and_the_next_request_works(queued_app, name):
    response = post(queued_app, bad_files()[name], name=name)
    assert 400 <= response.status_code < 500, response.text
    message = response.json()["detail"]
    if name == "empty.jpg":  # no photo at all: says how to send one
        assert "curl --data-binary @photo.jpg" in message and response.status_code == 400
    else:  # names the file and what is wrong with it
        assert message.startswith(f"{name}: ") and response.status_code == 422
    refused = audit_lines(queued_app)[-1]
    assert refused["source"] == "api" and refused["refused"]
    after = post(queued_app, jpeg_bytes(skimage_photo("chelsea")))
    assert after.status_code == 200 and after.json()["label"] == "not_husky"


@pytest.mark.slow  # serves the app
def test_a_body_over_the_upload_limit_is_refused_announced_or_streamed(queued_app):
    big = b"\xff\xd8\xff" + bytes(11 * 1024 * 1024)
    announced = post(queued_app, big, "127.0.0.60")
    assert announced.status_code == 413 and "at most 10 MB" in announced.json()["detail"]

    def chunks():
        for _ in range(11):
            yield bytes(1024 * 1024)

    with client_from("127.0.0.61") as http:
        streamed = http.post(queued_app["url"] + PATH, content=chunks())
    assert streamed.status_code == 413

    def form(size: int) -> bytes:  # one file part as curl -F sends it
        return (b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
                b"Content-Type: image/jpeg\r\n\r\n" + b"\xff\xd8\xff" + bytes(size) + b"\r\n--b--\r\n")

    with client_from("127.0.0.62") as http:  # the middleware leaves a form's headers room, the route holds the photo
        over = http.post(queued_app["url"] + PATH, content=form(10 * 1024 * 1024),
                         headers={"content-type": "multipart/form-data; boundary=b"})
    assert over.status_code == 413
    assert over.json()["detail"] == "The request is too large: a photo may be at most 10 MB."
    assert post(queued_app, jpeg_bytes(skimage_photo("coffee")), "127.0.0.60").status_code == 200


@pytest.mark.slow  # serves the app
def test_answers_tell_the_label_only_when_the_app_says_so(strict_app):
    response = post(strict_app, jpeg_bytes(skimage_photo("chelsea")), "127.0.0.70")
    assert response.status_code == 200
    assert response.json() == {"label": "not_husky", "verdict": "Not a husky"}  # no probability anywhere


@pytest.mark.slow  # serves the app
def test_the_rate_limit_applies_per_address(strict_app):
    photo = jpeg_bytes(skimage_photo("coffee"))
    statuses = [post(strict_app, photo, "127.0.0.71").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = post(strict_app, photo, "127.0.0.71")
    assert "Slow down" in refused.json()["detail"] and refused.headers["retry-after"]
    assert post(strict_app, photo, "127.0.0.72").status_code == 200  # another address has its own budget
    assert any(e["refused"] == "rate limit (predictions)" for e in audit_lines(strict_app))


@pytest.mark.slow  # serves the app
def test_one_request_at_a_time_per_address(strict_app):
    """A request whose body is still arriving holds the address's one slot: a second one is refused at once."""
    port = int(strict_app["url"].rstrip("/").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.73", 0)) as slow:
        slow.sendall(f"POST /{PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode() + b"\xff\xd8")
        time.sleep(0.5)  # the middleware has counted it
        second = post(strict_app, jpeg_bytes(skimage_photo("coffee")), "127.0.0.73")
        assert second.status_code == 429 and "at a time" in second.json()["detail"]

