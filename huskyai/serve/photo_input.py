"""The photo box: gradio's image component on the page, the upload's raw bytes on the server.

gradio's stock ``gr.Image`` decodes every upload with PIL before the app sees it, so a text file or
a decompression bomb would surface as a bare "Error". The page's box (:data:`PhotoBox`) hands its payload
over untouched, and :func:`read_upload` reads the bytes undecoded, for huskyai's own hardened decoder,
after checking the upload limit (inline ``data:`` URLs too, before decoding them). The file name the client
gives is bounded (huskyai.clienttext) before anything repeats it. Uploads are never deleted here:
huskyai.serve.limits.uploads does that on a timer, since the page's preview and a second click need the file.
"""

from __future__ import annotations

import base64
import binascii
import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huskyai.clienttext import client_text
from huskyai.serve.gradio_adapter import AsSentImage
from huskyai.serve.limits.uploads import UploadRegistry

PhotoBox = AsSentImage  # gradio's image box on the page; on the server its payload reaches read_upload as sent


@dataclass(frozen=True)
class Upload:
    """A photo as the app received it: its bytes, or why it cannot be read."""

    data: bytes | None
    name: str
    problem: str | None = None  # why the photo cannot be read, for the person (already HTML-escaped)


def read_upload(payload: Any, limit: int, uploads: UploadRegistry | None = None) -> Upload | None:
    """The photo a request carries, as the photo box (:data:`PhotoBox`) hands it over: gradio's file data (a
    file in its upload cache, or an inline ``data:`` URL), or None when there is no photo. ``limit`` is the
    upload limit in bytes; ``uploads`` notes the file as used, so it is kept a while for a second question."""
    if payload is None:
        return None
    # the client's own text, of any length (gradio passes it on untouched): bounded here, once, for the
    # page and gradio's API alike, and escaped wherever it is shown
    name = client_text(getattr(payload, "orig_name", None), default="upload")
    url = getattr(payload, "url", None)
    if url and url.startswith("data:"):  # pasted or webcam images may arrive inline
        return _inline(url, name, limit)
    if getattr(payload, "path", None) is None:
        return None
    path = Path(payload.path)
    try:
        if path.stat().st_size > limit:
            return _too_large(name, limit)
        data = path.read_bytes()
    except OSError:
        return Upload(None, name, f"{html.escape(name)}: the upload is no longer on the server; upload it again")
    if uploads is not None:
        uploads.touch(path)  # kept a while longer for a second question
    return Upload(data, name)


def _inline(url: str, name: str, limit: int) -> Upload:
    encoded = url.split(",", 1)[-1]
    if len(encoded) > math.ceil(limit / 3) * 4:  # checked before decoding anything
        return _too_large(name, limit)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return Upload(None, name, f"{html.escape(name)}: the inline image is not valid base64")
    return Upload(data, name) if len(data) <= limit else _too_large(name, limit)


def _too_large(name: str, limit: int) -> Upload:
    mb = limit // (1024 * 1024)
    return Upload(None, name, f"{html.escape(name)}: the image is larger than the upload limit of {mb} MB")
