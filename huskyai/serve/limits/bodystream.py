"""ASGI plumbing for the fairness middleware: a request body read under a byte cap, a response held back.

:class:`CappedBody` wraps ``receive``: it counts the body's bytes as they stream and cuts the request
off at the cap, or when the body stalls, by raising :class:`BodyCutOff` inside the app (so an
unannounced, chunked body is never read to its end). :class:`HeldResponse` wraps ``send``: the
responses the middleware must read (the upload route's list of files, refusals) are held until they
are complete and handed over whole; every other response streams through untouched.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from huskyai.serve.gradio_adapter import UploadAborted

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
HELD_BYTES = 1024 * 1024  # of a held response, at most this much is kept
MAX_LENGTH_DIGITS = 15  # a Content-Length of more digits is no real body


class BodyCutOff(UploadAborted):
    """Raised inside the app when the middleware stops reading a request's body (of the type gradio's upload
    route catches, so that it deletes the partial files it wrote)."""


class CappedBody:
    """``receive`` for the app: the body's bytes are counted, and cut off over ``cap`` or when they stall.

    After a cut, ``cut`` holds (status, message for the client, reason for the audit log)."""

    def __init__(self, receive: Receive, cap: int, idle_timeout: float, too_large: str,
                 abort_on_disconnect: bool = False):
        self._receive = receive
        self.cap = cap
        self.idle_timeout = idle_timeout
        self.too_large = too_large
        self.abort_on_disconnect = abort_on_disconnect  # gradio's parser cleans up only on its own error type
        self.received = 0
        self.done = False
        self.cut: tuple[int, str, str] | None = None

    async def __call__(self) -> Message:
        if self.done:
            return await self._receive()  # after the body: disconnect notices for streaming answers
        try:
            message = await asyncio.wait_for(self._receive(), self.idle_timeout)
        except asyncio.TimeoutError:
            self.cut = (408, "The request body stalled; send it again.", "request body stalled")
            raise BodyCutOff("Request body stalled.") from None
        if message["type"] == "http.disconnect":
            if self.abort_on_disconnect:
                raise BodyCutOff("Upload aborted by the client.")
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.cap:
            self.cut = (413, self.too_large, f"request body too large: over {self.cap} bytes while streaming")
            raise BodyCutOff("Request body exceeded maximum allowed size.")
        if not message.get("more_body", False):
            self.done = True
        return message


class HeldResponse:
    """``send`` for the app: a response whose status ``hold`` picks is held until complete, then given to
    ``on_complete(start_message, body)``, which answers the client; others pass through. Once the body
    was cut off nothing the app says is sent: the middleware's refusal replaces it."""

    def __init__(self, send: Send, body: CappedBody, hold: Callable[[int], bool],
                 on_complete: Callable[[Message, bytes], Awaitable[None]]):
        self._send = send
        self._body = body
        self._hold = hold
        self._on_complete = on_complete
        self._start: Message | None = None
        self._parts: list[bytes] = []
        self.started = False  # whether anything has reached the client

    async def __call__(self, message: Message) -> None:
        if self._body.cut is not None:
            return
        if message["type"] == "http.response.start" and self._hold(message["status"]):
            self._start = message
            return
        if message["type"] == "http.response.body" and self._start is not None:
            if sum(map(len, self._parts)) < HELD_BYTES:
                self._parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                self.started = True
                await self._on_complete(self._start, b"".join(self._parts))
            return
        self.started = True
        await self._send(message)


def content_length(scope: Scope) -> int | None:
    """The announced Content-Length: None when there is none, -1 when it is not a number."""
    for k, v in scope.get("headers", ()):
        if k == b"content-length":  # digits only, and not thousands of them (int() takes "1_0" and " 10 ")
            return int(v) if v.isdigit() and len(v) <= MAX_LENGTH_DIGITS else -1
    return None


async def send_json(send: Send, status: int, message: str, retry_after: int | None = None) -> None:
    """Answer with ``message`` as JSON (as gradio's own errors are: "detail" and "error") and close."""
    body = json.dumps({"detail": message, "error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
