"""Every gradio and uvicorn internal the app relies on, in one place, each with the reason it is needed.

The app uses gradio's public API where it is used (``gr.Blocks``, components, ``gr.Error``, ``launch``'s
keyword arguments). What reaches past that API lives here and nowhere else: private attributes, private
modules, the paths of gradio's routes and what its components do on the server. Each was checked against
the versions below; tests/serve/test_gradio_adapter.py checks that each still exists and behaves as this
module assumes, so an upgrade of gradio or uvicorn fails there first, by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr
import uvicorn
from gradio import http_server
from gradio import utils as gradio_utils
from gradio.routes import App
from starlette.formparsers import MultiPartException
from uvicorn.protocols.http.h11_impl import H11Protocol

GRADIO_VERSION = "6.31.0"  # requirements.txt pins it: the internals below were read in this version
UVICORN_VERSION = "0.55.0"

# --- the paths of gradio's routes (gradio.routes, mounted under gradio.route_utils.API_PREFIX) ---------------
# The fairness middleware must know which requests cost work before gradio parses them: routes are its only
# handle, since gradio decides which function a request calls only after reading the body.
API_PREFIX = "/gradio_api"
UPLOAD_ROUTE = re.compile(r"/gradio_api/upload")  # multipart files into the cache, before any event
JOIN_ROUTE = re.compile(r"/gradio_api/(queue/join|call/(v2/)?[^/]+)")  # starts an event in the queue
DIRECT_ROUTE = re.compile(r"/gradio_api/(run|api)/[^/]+")  # runs a function outside the queue (closed here)

# gradio's upload route catches this type (starlette's, imported by gradio.route_utils) and deletes the
# partial files it wrote; raised by the middleware inside the route, it cuts an upload off cleanly
UploadAborted = MultiPartException

# uvicorn's pure-Python HTTP/1.1 protocol: huskyai.serve.limits.connections subclasses it to put deadlines on
# a connection, and reads its per-connection attributes ``conn`` (h11's state), ``cycle``, ``flow``,
# ``transport``, ``client`` and ``loop`` (uvicorn 0.55.0)
UvicornH11Protocol = H11Protocol


# --- gradio's frontend, as the page's own scripts find it (data-testid and aria-label values of gradio 6.31) ---
# the close buttons of the toasts gradio shows for errors: closed when the photo they were about is gone
CLOSE_TOASTS_JS = 'document.querySelectorAll(\'[data-testid="toast-close"]\').forEach((b) => b.click())'
# once gradio's image box shows a photo, only the photo itself (inside its "div.upload-container") takes a drop:
# a photo dropped on the rest of the box (its label, its toolbar, the bar of sources under it) does nothing,
# although the whole box took it while empty. A drop anywhere on a filled box is handed to that zone, which
# loads the new photo in place of the old one.
REPLACE_ON_DROP_JS = """() => {
    const zone = (e) => {
        const box = e.target && e.target.closest ? e.target.closest('[data-testid="image"]') : null;
        if (!box || !box.querySelector('img') || !e.dataTransfer) return null;
        if (![...e.dataTransfer.types].includes('Files')) return null;
        const inner = box.querySelector('div.upload-container');
        return inner && !inner.contains(e.target) ? inner : null;
    };
    document.addEventListener('dragover', (e) => { if (zone(e)) e.preventDefault(); }, true);
    document.addEventListener('drop', (e) => {
        const inner = zone(e);
        if (!inner) return;
        e.preventDefault();
        e.stopPropagation();
        const dt = new DataTransfer();
        [...e.dataTransfer.files].forEach((f) => dt.items.add(f));
        for (const type of ['dragenter', 'dragover', 'drop']) {
            inner.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: dt}));
        }
    }, true);
}"""


def upload_folder() -> str:
    """gradio's upload cache (GRADIO_TEMP_DIR or its default): the app deletes its uploads there on a timer,
    since gradio keeps them until the process ends."""
    return gradio_utils.get_upload_folder()


def kept_in_cache(demo: gr.Blocks) -> set[str]:
    """The files gradio placed in its cache for the page's own components (example photos, the card's plot),
    from each component's ``keep_in_cache``: the upload sweeper must never delete them."""
    return {p for block in list(demo.blocks.values()) for p in list(getattr(block, "keep_in_cache", ()))}


def queued_requests(demo: gr.Blocks) -> list[Any]:
    """The requests (each a ``gr.Request``-like object with ``headers`` and ``client``) of the events waiting
    or running in gradio's queue (``Queue.event_ids_to_events``): the middleware counts them per client, so
    that one client has one event in the queue at a time. gradio has no public count per client."""
    events = list(getattr(demo._queue, "event_ids_to_events", {}).values())
    return [e.request for e in events]


@contextlib.contextmanager
def server_app_built_at_launch() -> Iterator[None]:
    """Inside this block gradio builds no server app: ``Blocks.__exit__`` and ``Blocks.queue`` each build a
    whole FastAPI app (``App.create_app``) and throw it away; ``launch`` builds the one it serves. Skipping the
    throwaway builds shortens the app's start. Another gradio (``create_app`` not a staticmethod) is left
    alone."""
    real = App.__dict__.get("create_app")
    if not isinstance(real, staticmethod):
        yield
        return
    App.create_app = staticmethod(lambda *args, **kwargs: None)
    try:
        yield
    finally:
        App.create_app = real


@contextlib.contextmanager
def serve_on(listener: socket.socket, protocol: type[asyncio.Protocol], before_start: Callable[[], None] = lambda: None,
             on_started: Callable[[], None] = lambda: None) -> Iterator[None]:
    """While gradio launches inside this block, its server serves ``listener`` (a bound, listening socket: the
    start-up listener's, huskyai.serve.startup) with ``protocol`` for every connection.

    ``Blocks.launch`` starts its server through ``gradio.http_server.start_server``, which test-binds the port
    first (it would find it taken by the listener) and lets uvicorn bind a socket of its own, with no way to pass
    a socket, nor ``http=`` for the protocol. For the block's duration that function is replaced by one that
    builds the same ``uvicorn.Config`` (with ``http=protocol``) and gradio's own ``Server`` class (``run_in_thread``,
    ``close``), whose ``run`` serves the listener. ``before_start`` runs just before the server starts (the
    start-up listener stops taking connections there: the kernel holds new ones for the page's server), and
    ``on_started`` once it accepts. WebSockets are off (``ws="none"``): gradio 6 talks to the page over HTTP and
    server-sent events only, and an upgraded connection would leave the protocol, its deadlines and its count.
    TLS is the reverse proxy's (deploy/nginx.conf): launch's TLS arguments are refused here."""
    original = http_server.start_server

    class Server(http_server.Server):
        def run(self, sockets: list[socket.socket] | None = None) -> None:
            return super().run(sockets=[listener])

    def start_server(app: App, server_name: str | None = None, server_port: int | None = None,
                     ssl_keyfile: str | None = None, ssl_certfile: str | None = None,
                     ssl_keyfile_password: str | None = None) -> tuple[str, int, str, http_server.Server]:
        if ssl_keyfile or ssl_certfile:
            raise ValueError("the app serves plain HTTP; TLS is the reverse proxy's (deploy/nginx.conf)")
        host, port = listener.getsockname()[:2]
        config = uvicorn.Config(app=app, host=host, port=port, log_level="warning", http=protocol, ws="none")
        server = Server(config=config)
        before_start()
        server.run_in_thread()
        on_started()
        shown = "localhost" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
        return server_name or host, port, f"http://{shown}:{port}/", server

    http_server.start_server = start_server
    try:
        yield
    finally:
        http_server.start_server = original


def from_the_page(request: Any) -> bool:
    """Whether a gradio event came from the page's own frontend: gradio 6.31's page sends ``x-gradio-user: app``
    with each event, its JavaScript and Python clients ``api`` (a call through ``/gradio_api/call/...`` sends
    none). Only the metrics read it (a client may say what it likes here and gain nothing)."""
    headers = getattr(request, "headers", None)
    return headers is not None and headers.get("x-gradio-user") == "app"


class _AsSent:
    """The two overrides of the classes below: the payload as sent, and the stock frontend."""

    block = ""

    def get_block_name(self) -> str:
        return self.block

    def get_block_class(self) -> str:  # the name the API's description and gr.load() see
        return self.block

    def preprocess(self, payload: Any) -> Any:
        return payload


# gradio runs a component's ``preprocess`` on the server before the handler: ``gr.Image`` decodes every upload
# with PIL (a text file or a bomb would surface as a bare "Error"), and ``gr.Number``, ``gr.Slider`` and
# ``gr.Dropdown`` refuse a value outside their range without an audit line, echoing it at any length. These
# subclasses hand the payload to the handler untouched, for huskyai's own checks; ``get_block_name`` and
# ``get_block_class`` keep the stock component's name, so the page uses gradio's own frontend for them and the
# API's description names the stock component. (gradio writes a type stub beside
# this file for each, at run time: .gitignore leaves them out.)
class AsSentImage(_AsSent, gr.Image):
    block = "image"


class AsSentNumber(_AsSent, gr.Number):
    block = "number"


class AsSentDropdown(_AsSent, gr.Dropdown):
    block = "dropdown"


class AsSentSlider(_AsSent, gr.Slider):
    block = "slider"
