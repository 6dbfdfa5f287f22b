"""Each gradio and uvicorn internal of huskyai.serve.gradio_adapter still exists and behaves as the adapter says:
an upgrade fails here first, by name."""

from __future__ import annotations

import importlib.metadata

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


def test_the_uvicorn_protocol_is_swapped_only_inside_the_block():
    import asyncio

    from gradio import http_server

    original = http_server.Server

    class Marker(asyncio.Protocol):
        pass

    with gradio_adapter.uvicorn_protocol(Marker):
        import uvicorn

        config = uvicorn.Config(app=lambda *a: None)
        http_server.Server(config)
        assert (config.http, config.ws) == (Marker, "none")
    assert http_server.Server is original
    import inspect
    import re

    source = inspect.getsource(gradio_adapter.UvicornH11Protocol)  # the attributes connections.py reads
    assigned = set(re.findall(r"self\.(\w+)\s*(?::[^=\n]*)?=", source))
    assert {"conn", "cycle", "flow", "client", "loop", "transport"} <= assigned


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
