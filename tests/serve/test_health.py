"""/livez and /readyz: the routes themselves (in-process), and the start-up order of ``python app.py`` as a watcher
sees it from the first second: the port answers at once, /readyz says 503 with each reason in turn and then 200,
and no connection is refused once the port has answered, through the handover to the page's server."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import httpx
import pytest
from starlette.applications import Starlette

from conftest import ROOT, free_port, jpeg_bytes, python_env, skimage_photo
from huskyai.serve.health import LOADING, STARTING, Readiness, health_routes
from huskyai.serve.startup import starting_app


def get(app, path: str, method: str = "GET") -> httpx.Response:
    async def ask() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            return await c.request(method, path)
    return asyncio.run(ask())


def test_readyz_is_503_with_its_reason_until_ready_and_livez_is_always_200():
    readiness = Readiness(LOADING)
    app = Starlette(routes=health_routes(readiness))
    answer = get(app, "/readyz")
    assert (answer.status_code, answer.json()) == (503, {"ready": False, "reason": LOADING})
    assert answer.headers["retry-after"] == "1"
    assert get(app, "/livez").status_code == 200 and get(app, "/livez", "HEAD").status_code == 200
    readiness.mark_ready()
    assert (get(app, "/readyz").status_code, get(app, "/readyz").json()) == (200, {"ready": True})


def test_a_late_step_of_the_start_up_never_moves_readiness_back():
    readiness = Readiness(LOADING)
    readiness.moved_on(LOADING, STARTING)
    assert readiness.reason == STARTING
    readiness.mark_ready()
    readiness.moved_on(LOADING, STARTING)  # the loader's callback, arriving after the page is up
    assert readiness.ready


def test_the_start_up_listener_answers_every_other_path_with_503_and_when_to_come_back():
    readiness = Readiness(LOADING)
    app = starting_app(readiness)
    for method, path in [("POST", "/api/v1/predict"), ("GET", "/"), ("POST", "/gradio_api/upload")]:
        answer = get(app, path, method)
        assert answer.status_code == 503 and answer.headers["retry-after"] == "2"
        assert LOADING in answer.json()["detail"] and answer.json()["detail"] == answer.json()["error"]
    assert get(app, "/readyz").status_code == 503 and get(app, "/livez").status_code == 200


ORDER = ["refused", LOADING, STARTING, "ready"]


def state(base: str) -> tuple[str, int | None]:
    """What a watcher sees at /readyz now: "refused" (nothing listens), a reason (503), or "ready" (200); on a new
    connection each time, as a probe makes one."""
    try:
        answer = httpx.get(f"{base}readyz", timeout=5)
    except httpx.ConnectError:
        return "refused", None
    if answer.status_code == 200:
        return "ready", 200
    return answer.json()["reason"], answer.status_code


@pytest.mark.slow  # python app.py as a user starts it
def test_start_up_order_as_readyz_tells_it(tmp_path):
    """Polled every 20 ms from the moment ``python app.py`` starts: the port answers before the model is loaded;
    /readyz goes 503 "loading and verifying the model", 503 "...starting the page's server", then 200, never
    back; /livez is 200 whenever the port answers; a prediction asked during start-up gets 503 and Retry-After;
    and from the first answer on, every probe is answered (the page's server takes the socket over without a
    refused or dropped connection)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    env = python_env() | {"GRADIO_SERVER_PORT": str(port), "GRADIO_TEMP_DIR": str(tmp_path / "cache"),
                          "GRADIO_ANALYTICS_ENABLED": "False", "HUSKYAI_AUDIT_LOG": str(tmp_path / "audit.jsonl")}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    during_start_up = None
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            now, status = state(base)
            if not seen or seen[-1] != now:
                seen.append(now)
            if status == 503:
                assert httpx.get(f"{base}livez", timeout=5).status_code == 200
                if during_start_up is None:
                    during_start_up = httpx.post(f"{base}api/v1/predict", content=b"x", timeout=5)
            if now == "ready":
                break
            time.sleep(0.02)
        assert seen[-1] == "ready", (seen, proc.poll())
        after = [state(base)[0] for _ in range(20)]
        photo = jpeg_bytes(skimage_photo("coffee"))
        answered = httpx.post(f"{base}api/v1/predict", content=photo, timeout=60)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert [s for s in seen if s != "refused"] in ([LOADING, STARTING, "ready"], [LOADING, "ready"]), seen
    assert seen.index(LOADING) <= 1  # before it, at most a stretch of "refused" while Python starts
    assert all(ORDER.index(a) < ORDER.index(b) for a, b in zip(seen, seen[1:])), seen  # never back
    assert set(after) == {"ready"}
    assert during_start_up is not None and during_start_up.status_code == 503
    assert during_start_up.headers["retry-after"] == "2" and "starting" in during_start_up.json()["detail"]
    assert answered.status_code == 200 and answered.json()["label"] == "not_husky"
    assert "Traceback" not in out, out


@pytest.mark.slow  # python app.py as a user starts it
def test_a_port_in_use_is_one_line_before_the_model_is_loaded(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = python_env() | {"GRADIO_SERVER_PORT": str(port), "HUSKYAI_AUDIT_LOG": "off",
                              "HUSKYAI_MODEL": str(tmp_path / "no-such-export")}  # never read: the port comes first
        proc = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: cannot listen on 127.0.0.1:{port}: "
                                                "[Errno 98] Address already in use"]
