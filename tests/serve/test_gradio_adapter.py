"""Each gradio and uvicorn internal of huskyai.serve.gradio_adapter still exists and behaves as the adapter says:
an upgrade fails here first, by name."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import gradio as gr
import pytest

from huskyai.serve import gradio_adapter


def test_the_pinned_versions_are_the_installed_ones():
    assert gr.__version__ == gradio_adapter.GRADIO_VERSION
    assert importlib.metadata.version("uvicorn") == gradio_adapter.UVICORN_VERSION


def test_the_route_patterns_match_gradios_own_routes():
    """Each path the middleware classifies is a route of the app gradio builds (an unknown path is a 404)."""
    import asyncio

    import httpx
    from gradio.routes import App

    with gr.Blocks() as demo:
        gr.Button().click(lambda: None, api_name="predict")
    demo.queue()
    demo.max_file_size = 1024  # launch sets it before it builds the app: the upload route reads it
    app = App.create_app(demo)

    async def statuses(paths: list[str]) -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            return [(await c.post(p, json={})).status_code for p in paths]

    sent = {"/gradio_api/upload": gradio_adapter.UPLOAD_ROUTE, "/gradio_api/queue/join": gradio_adapter.JOIN_ROUTE,
            "/gradio_api/call/predict": gradio_adapter.JOIN_ROUTE, "/gradio_api/call/v2/predict":
            gradio_adapter.JOIN_ROUTE, "/gradio_api/run/predict": gradio_adapter.DIRECT_ROUTE,
            "/gradio_api/api/predict": gradio_adapter.DIRECT_ROUTE}
    assert all(pattern.fullmatch(path) for path, pattern in sent.items())
    assert 404 not in asyncio.run(statuses(list(sent)))
    assert asyncio.run(statuses(["/gradio_api/no-such-route"])) == [404]


def test_the_upload_routes_error_type_is_the_one_gradio_catches():
    import inspect

    from gradio import routes

    assert "except MultiPartException" in inspect.getsource(routes)
    assert routes.MultiPartException is gradio_adapter.UploadAborted


def test_the_throwaway_server_apps_are_skipped_and_launch_still_builds_one():
    from gradio.routes import App

    real = App.__dict__["create_app"]
    with gradio_adapter.server_app_built_at_launch():
        with gr.Blocks() as demo:
            gr.Markdown("x")
        demo.queue()
        assert demo.app is None
    assert App.__dict__["create_app"] is real
    assert App.create_app(demo) is not None


def test_the_queue_is_counted_from_its_events():
    with gr.Blocks() as demo:
        gr.Markdown("x")
    demo.queue()
    assert gradio_adapter.queued_requests(demo) == []  # Queue.event_ids_to_events exists and is empty
    assert isinstance(demo._queue.event_ids_to_events, dict)


def test_the_page_server_serves_the_given_listener_through_the_given_protocol():
    """gradio's launch, inside serve_on, serves the socket it is given (bound before gradio ever ran) through the
    given protocol, calls before_start then on_started, and puts gradio's start_server back afterwards."""
    import httpx
    from gradio import http_server

    from huskyai.serve.startup import bind

    original = http_server.start_server
    listener = bind("127.0.0.1", 0)
    port = listener.getsockname()[1]
    connections, events = [], []

    class Counting(gradio_adapter.UvicornH11Protocol):
        def connection_made(self, transport) -> None:
            connections.append(self)
            super().connection_made(transport)

    with gr.Blocks() as demo:
        gr.Markdown("x")
    with gradio_adapter.serve_on(listener, Counting, before_start=lambda: events.append("before"),
                                 on_started=lambda: events.append("started")):
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        assert http_server.start_server is original
        assert events == ["before", "started"]
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        assert connections  # every connection went through the given protocol
    finally:
        demo.close()


def test_uvicorns_h11_protocol_keeps_the_attributes_the_connection_guard_reads():
    import inspect
    import re

    source = inspect.getsource(gradio_adapter.UvicornH11Protocol)  # the attributes connections.py reads
    assigned = set(re.findall(r"self\.(\w+)\s*(?::[^=\n]*)?=", source))
    assert {"conn", "cycle", "flow", "client", "loop", "transport"} <= assigned


def test_an_event_from_the_page_is_told_from_an_api_call():
    """gradio 6.31's page sends x-gradio-user: app with its events; its clients send api, curl nothing."""
    from types import SimpleNamespace

    def request(**headers: str) -> SimpleNamespace:
        return SimpleNamespace(headers=headers)

    assert gradio_adapter.from_the_page(request(**{"x-gradio-user": "app"}))
    assert not gradio_adapter.from_the_page(request(**{"x-gradio-user": "api"}))
    assert not gradio_adapter.from_the_page(request())
    assert not gradio_adapter.from_the_page(None)
    page_js = "".join(p.read_text(errors="replace") for p in
                      (Path(gr.__file__).parent / "templates" / "frontend" / "assets").glob("Blocks-*.js"))
    assert '"x-gradio-user":`app`' in page_js  # the page's own events say so (gradio's frontend build)


@pytest.mark.parametrize("cls,stock", [(gradio_adapter.AsSentImage, "image"), (gradio_adapter.AsSentNumber, "number"),
                                       (gradio_adapter.AsSentDropdown, "dropdown")])
def test_as_sent_boxes_pass_the_payload_untouched_and_keep_the_stock_frontend(cls, stock):
    box = cls()
    payload = object()
    assert box.preprocess(payload) is payload
    assert box.get_block_name() == box.get_block_class() == stock
    assert box.get_config()["name"] == stock


def test_the_upload_folder_and_kept_files_are_read_from_gradio(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    assert gradio_adapter.upload_folder() == str(tmp_path)
    from PIL import Image

    with gr.Blocks() as demo:
        gr.Image(Image.new("RGB", (8, 8)), format="png")
    kept = gradio_adapter.kept_in_cache(demo)
    assert len(kept) == 1 and str(tmp_path) in next(iter(kept))
