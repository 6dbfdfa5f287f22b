"""/metrics of the served app (in-process, real HTTP on loopback): answers by door and label, refusals by kind,
latency per door, engine time, the gauges, the model's info; never a client's address or pseudonym, a photo's
hash or a file name; who may read it (HUSKYAI_METRICS); and that reading it costs no client's budget."""

from __future__ import annotations

import hashlib
import socket
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serve.helpers import served, wait_until

from conftest import bad_files, jpeg_bytes, skimage_photo
from huskyai.redteam.client import call_with_path, client_from, raw_predict, upload
from huskyai.serve.metrics import may_scrape

PHOTO_NAME = "secret-name-of-rex.jpg"


def scrape(url: str, **headers: str) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    response = httpx.get(f"{url}metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture(scope="module")
def app(shipped, tmp_path_factory):
    with served(shipped, tmp_path_factory.mktemp("metrics"), rate_limit=1000, explain_rate_limit=1,
                explain_method="occlusion") as server:
        yield server


@pytest.mark.slow  # serves the app
def test_answers_are_counted_by_door_and_label_with_latency_and_engine_time(app, shipped):
    photo = jpeg_bytes(skimage_photo("chelsea"))
    expected = shipped.predict(photo).label
    with client_from("127.0.0.11") as c:
        raw_predict(app.url, photo, client=c, name=PHOTO_NAME)  # a script's gradio API call
        c.headers["x-gradio-user"] = "app"  # as the page's own frontend sends its events
        raw_predict(app.url, photo, client=c, name=PHOTO_NAME)
        raw_predict(app.url, photo, client=c, name=PHOTO_NAME)
        raw_predict(app.url, photo, api="explain", client=c, name=PHOTO_NAME)  # the heatmap: explain's door
        # over the heatmap limit of 1 a minute: skipped (the verdict stands), counted as a refusal of its kind
        raw_predict(app.url, photo, api="explain", client=c, name=PHOTO_NAME)
        assert c.post(f"{app.url}api/v1/predict", content=photo).status_code == 200
    from gradio_client import Client

    Client(app.url, verbose=False).predict(api_name="/predict_mood")  # the Mood tab's API, the average day

    got = scrape(app.url)
    assert sample(got, "huskyai_predictions_total", door="gradio_api", label=expected) == 1
    assert sample(got, "huskyai_predictions_total", door="page", label=expected) == 2
    assert sample(got, "huskyai_predictions_total", door="explain", label=expected) == 1
    assert sample(got, "huskyai_predictions_total", door="rest", label=expected) == 1
    assert sample(got, "huskyai_predictions_total", door="mood", label="mood") == 1
    other = next(c for c in shipped.classes if c != expected)
    assert sample(got, "huskyai_predictions_total", door="rest", label=other) == 0  # present from the start
    assert sample(got, "huskyai_refusals_total", reason="explain_rate_limit") == 1
    for door, count in [("gradio_api", 1), ("page", 2), ("explain", 2), ("rest", 1), ("mood", 1)]:
        assert sample(got, "huskyai_request_duration_seconds_count", door=door) == count, door
        assert sample(got, "huskyai_request_duration_seconds_sum", door=door) > 0
    assert sample(got, "huskyai_engine_seconds_count") == 4  # the four predictions (a heatmap times its own)
    assert 0 < sample(got, "huskyai_engine_seconds_sum") < 4
    assert sample(got, "huskyai_uploads_kept") >= 1 and sample(got, "huskyai_uploads_kept_bytes") >= len(photo)
    assert sample(got, "huskyai_model_info", card_sha256=shipped.model_sha256, trust=shipped.trust,
                  precision=shipped.precision) == 1
    assert sample(got, "huskyai_ready") == 1 and sample(got, "huskyai_limits_store_up") == 1

    text = httpx.get(f"{app.url}metrics").text  # nothing that names a client or a photo
    pseudonyms = {line["client"] for line in app.audit()}
    assert pseudonyms and not any(p in text for p in pseudonyms)
    assert "127.0.0" not in text and PHOTO_NAME not in text and "rex" not in text
    assert hashlib.sha256(photo).hexdigest() not in text


@pytest.mark.slow  # serves the app
def test_refusals_are_counted_by_kind_never_by_the_clients_words(app):
    before = scrape(app.url)
    with client_from("127.0.0.12") as c:
        assert c.post(f"{app.url}api/v1/predict", content=b"").status_code == 400
        text = bad_files()["text.jpg"]
        assert c.post(f"{app.url}api/v1/predict", params={"name": "<my words>"}, content=text).status_code == 422
    with socket.create_connection(("127.0.0.1", app.port), source_address=("127.0.0.12", 0)) as s:
        s.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 413")  # refused as announced, before any byte of the body
    after = scrape(app.url)

    def grew(reason: str) -> float:
        key = ("huskyai_refusals_total", (("reason", reason),))
        return after[key] - before[key]

    assert (grew("no_photo"), grew("unreadable_photo"), grew("body_too_large")) == (1, 1, 1)
    reasons = {dict(labels)["reason"] for name, labels in after if name == "huskyai_refusals_total"}
    assert "<my words>" not in httpx.get(f"{app.url}metrics").text
    from huskyai.serve.refusals import Refusal

    assert reasons == {kind.value for kind in Refusal}  # a fixed set of kinds, each present from the start


@pytest.mark.slow  # serves the app
def test_in_flight_requests_and_queue_depth_are_seen_while_they_last(app, shipped):
    """A lean request whose body is still arriving is in flight; a heatmap being made is an event in the queue."""
    port = app.port
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                  b"Content-Length: 100000\r\n\r\n" + b"\xff" * 100)
        assert wait_until(lambda: sample(scrape(app.url), "huskyai_in_flight_requests") == 1, timeout=10)
    assert wait_until(lambda: sample(scrape(app.url), "huskyai_in_flight_requests") == 0, timeout=10)

    big = jpeg_bytes(skimage_photo("astronaut").resize((1024, 1024)))

    def heatmap() -> None:
        with client_from("127.0.0.13", timeout=120) as c:
            path = upload(app.url, big, "big.jpg", c)
            call_with_path(app.url, path, api="explain", client=c)

    worker = threading.Thread(target=heatmap)
    worker.start()
    deepest = 0.0
    while worker.is_alive():
        deepest = max(deepest, sample(scrape(app.url), "huskyai_queue_depth"))
        time.sleep(0.01)
    worker.join()
    assert deepest >= 1


@pytest.mark.slow  # serves the app
def test_reading_metrics_costs_no_budget_of_the_client(shipped, tmp_path):
    """Twenty scrapes from one address, then that address still has its whole prediction budget (2 a minute)
    and its third prediction is refused as before: /metrics neither spends a budget nor goes around one."""
    photo = jpeg_bytes(skimage_photo("coffee"))
    with served(shipped, tmp_path, rate_limit=2, max_in_flight=1) as server:
        for _ in range(20):
            scrape(server.url)
        with client_from("127.0.0.1") as c:
            statuses = [c.post(f"{server.url}api/v1/predict", content=photo).status_code for _ in range(3)]
            assert c.post(f"{server.url}metrics", content=photo[:1000]).status_code == 405  # no door to a prediction
        assert statuses == [200, 200, 429]
        got = scrape(server.url)
        assert sample(got, "huskyai_refusals_total", reason="rate_limit") == 1
        assert sample(got, "huskyai_predictions_total", door="rest", label="not_husky") == 2


def test_who_may_read_metrics():
    """internal: a loopback peer that came directly; never through a proxy (which always adds its header),
    never from another machine. on: anyone. off: nobody."""
    direct, proxied = {}, {"x-forwarded-for": "198.51.100.7"}
    assert may_scrape("internal", "127.0.0.1", direct) and may_scrape("internal", "::1", direct)
    assert not may_scrape("internal", "127.0.0.1", proxied)
    assert not may_scrape("internal", "127.0.0.1", {"forwarded": "for=198.51.100.7"})
    assert not may_scrape("internal", "127.0.0.1", {"x-real-ip": "198.51.100.7"})
    assert not may_scrape("internal", "192.0.2.10", direct) and not may_scrape("internal", None, direct)
    assert may_scrape("on", "192.0.2.10", proxied)
    assert not may_scrape("off", "127.0.0.1", direct)


@pytest.mark.slow  # serves the app
@pytest.mark.parametrize("mode,direct,proxied", [("internal", 200, 404), ("on", 200, 200), ("off", 404, 404)])
def test_metrics_setting_on_the_served_app(shipped, tmp_path, mode, direct, proxied):
    with served(shipped, tmp_path, metrics=mode) as server:
        assert httpx.get(f"{server.url}metrics").status_code == direct
        assert httpx.get(f"{server.url}metrics", headers={"x-forwarded-for": "1.2.3.4"}).status_code == proxied
