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
from collections.abc import Iterator
from typing import Any

import gradio as gr
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
def uvicorn_protocol(protocol: type[asyncio.Protocol]) -> Iterator[None]:
    """Serve every connection through ``protocol`` while gradio starts its server inside this block.

    ``Blocks.launch`` builds its ``uvicorn.Config`` itself (in ``gradio.http_server.start_server``) and hands
    it to ``gradio.http_server.Server``, with no way to pass ``http=``: a subclass of that Server, put in its
    place for the duration, sets the protocol on the config before uvicorn loads it. WebSockets are off
    (``ws="none"``): gradio 6 talks to the page over HTTP and server-sent events only, and an upgraded
    connection would leave the protocol, its deadlines and its count."""
    original = http_server.Server

    class Server(original):
        def __init__(self, config, *args, **kwargs) -> None:
            config.http = protocol
            config.ws = "none"
            super().__init__(config, *args, **kwargs)

    http_server.Server = Server
    try:
        yield
    finally:
        http_server.Server = original


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
