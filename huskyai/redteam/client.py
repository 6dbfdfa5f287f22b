"""A raw-HTTP client for a running Husky AI app: gradio's own protocol, with no gradio_client in between.

gradio_client checks sizes on the caller's side and hides the server's status codes; an attacker
does neither, so the red-team kit, the tests and the benchmarks speak to the app as an attacker
would: upload a file, start a call, read its event stream. A refusal at any step raises
:class:`CallRefused` with the app's own message and the HTTP status.

    with client_from("127.0.0.5") as http:
        scores, verdict = raw_predict("http://127.0.0.1:7860/", "cat.jpg", client=http)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

FILE_META = {"_type": "gradio.FileData"}


class CallRefused(RuntimeError):
    """The app refused a request: an HTTP error on the upload or the call, or an error event.

    The text is the app's message; ``status`` is the HTTP status code, or None for an error event
    (a call that was accepted and then failed, as a photo that is not an image does)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def client_from(address: str = "127.0.0.1", timeout: float = 60) -> httpx.Client:
    """An HTTP client whose requests leave from ``address`` (any 127.x.y.z is this machine's loopback),
    so that one machine can play several clients of a per-address limit."""
    return httpx.Client(timeout=timeout, transport=httpx.HTTPTransport(local_address=address))


@contextlib.contextmanager
def _using(client: httpx.Client | None) -> Iterator[httpx.Client]:
    """The caller's client, or a fresh one closed afterwards."""
    if client is not None:
        yield client
        return
    with httpx.Client(timeout=60) as fresh:
        yield fresh


def refusal(response: httpx.Response) -> str | None:
    """The app's message when it refused a request (HTTP 4xx/5xx), else None."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:  # gradio answers some refusals in plain text
        return response.text.strip()[:300] or f"HTTP {response.status_code}"
    return str(body.get("detail") or body.get("error") or body) if isinstance(body, dict) else str(body)


def upload(base: str, data: bytes, name: str = "photo.jpg", client: httpx.Client | None = None,
           mime: str = "image/jpeg") -> str:
    """Upload ``data`` to the app at ``base`` (ending in "/") and return the path the server stored it at."""
    with _using(client) as c:
        response = c.post(f"{base}gradio_api/upload", files={"files": (name, data, mime)})
    if (message := refusal(response)) is not None:
        raise CallRefused(message, response.status_code)
    return response.json()[0]


def call(base: str, inputs: list[Any], api: str = "predict", client: httpx.Client | None = None) -> list:
    """Start a call of the endpoint ``api`` with ``inputs`` (gradio's JSON) and return its outputs."""
    with _using(client) as c:
        started = c.post(f"{base}gradio_api/call/{api}", json={"data": inputs})
        if (message := refusal(started)) is not None:
            raise CallRefused(message, started.status_code)
        text = c.get(f"{base}gradio_api/call/{api}/{started.json()['event_id']}").text
    lines = text.strip().splitlines()
    last = lines[-1].removeprefix("data: ") if lines else ""
    if not any(line.startswith("event: complete") for line in lines):
        raise CallRefused(_error_text(last) if last else text)
    return json.loads(last)


def _error_text(data: str) -> str:
    """The message of an error event's data line (gradio sends {"error": ...}, or null when it hides it)."""
    try:
        event = json.loads(data)
    except ValueError:
        return data
    if isinstance(event, dict) and isinstance(event.get("error"), str):
        return event["error"]
    return event if isinstance(event, str) else json.dumps(event)


def file_input(path: str, orig_name: str | None = None) -> dict:
    """A file already on the server, as a call's input. ``orig_name`` is the name the app is told;
    gradio passes it on as the client sent it."""
    item = {"path": path, "meta": FILE_META}
    return item | {"orig_name": orig_name} if orig_name is not None else item


def inline_input(data_url: str, orig_name: str = "inline.jpg") -> dict:
    """An inline ``data:`` URL (as a pasted or webcam image arrives), as a call's input."""
    return {"url": data_url, "orig_name": orig_name, "meta": FILE_META}


def call_with_path(base: str, path: str, api: str = "predict", client: httpx.Client | None = None) -> list:
    """Call ``api`` on a file already on the server (uploaded earlier) and return its outputs."""
    return call(base, [file_input(path)], api, client)


def raw_predict(base: str, photo: Path | str | bytes, api: str = "predict", client: httpx.Client | None = None,
                name: str = "photo.jpg") -> list:
    """Upload a photo (a file, or bytes named ``name``) and call ``api`` on it: [scores, verdict] for /predict."""
    if not isinstance(photo, bytes):
        name, photo = Path(photo).name, Path(photo).read_bytes()
    with _using(client) as c:
        return call_with_path(base, upload(base, photo, name, c), api, c)
