"""The photo box: gradio's image component on the page, the upload's raw bytes on the server.

gradio's stock ``gr.Image`` decodes every upload with PIL before the app sees it, so a text file or
a decompression bomb would surface as a bare "Error". :class:`PhotoInput` hands over the bytes
undecoded, for huskyai's own hardened decoder, after checking the upload limit (inline ``data:``
URLs too, before decoding them). The file name the client gives is bounded (huskyai.clienttext) before
anything repeats it. Uploads are never deleted here: huskyai.serve.limits.uploads does that on a
timer, since the page's preview and a second click need the file.
"""

from __future__ import annotations

import base64
import binascii
import html
import math
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from huskyai.clienttext import client_text
from huskyai.serve.limits.uploads import UploadRegistry
from huskyai.settings import UPLOAD_LIMIT_BYTES


@dataclass(frozen=True)
class Upload:
    """A photo as the app received it: its bytes, or why it cannot be read."""

    data: bytes | None
    name: str
    problem: str | None = None  # why the photo cannot be read, for the person (already HTML-escaped)


class PhotoInput(gr.Image):
    """gr.Image on the page; on the server it hands over the uploaded bytes, undecoded."""

    uploads: UploadRegistry | None = None  # set by build_demo: uploads are noted as used, never deleted here
    limit: int = UPLOAD_LIMIT_BYTES

    def get_block_name(self) -> str:
        return "image"  # keep the stock image frontend

    def preprocess(self, payload) -> Upload | None:
        if payload is None:
            return None
        # the client's own text, of any length (gradio passes it on untouched): bounded here, once, for the
        # page and gradio's API alike, and escaped wherever it is shown
        name = client_text(payload.orig_name, default="upload")
        if payload.url and payload.url.startswith("data:"):  # pasted or webcam images may arrive inline
            return self._inline(payload.url, name)
        if payload.path is None:
            return None
        path = Path(payload.path)
        try:
            if path.stat().st_size > self.limit:
                return self._too_large(name)
            data = path.read_bytes()
        except OSError:
            return Upload(None, name, f"{html.escape(name)}: the upload is no longer on the server; upload it again")
        if self.uploads is not None:
            self.uploads.touch(path)  # kept a while longer for a second question
        return Upload(data, name)

    def _inline(self, url: str, name: str) -> Upload:
        encoded = url.split(",", 1)[-1]
        if len(encoded) > math.ceil(self.limit / 3) * 4:  # checked before decoding anything
            return self._too_large(name)
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return Upload(None, name, f"{html.escape(name)}: the inline image is not valid base64")
        return Upload(data, name) if len(data) <= self.limit else self._too_large(name)

    def _too_large(self, name: str) -> Upload:
        mb = self.limit // (1024 * 1024)
        return Upload(None, name, f"{html.escape(name)}: the image is larger than the upload limit of {mb} MB")
