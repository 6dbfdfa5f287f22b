"""Fair serving, enforced before gradio sees a request (ASGI middleware on gradio's FastAPI app).

For every request, in this order:

1. The body cap: a Content-Length over the route's cap is refused before anything is read, and
   the bytes are counted while they stream, so an unannounced (chunked) body is cut off at the cap
   instead of being read and parsed. A body that stalls is cut off too.
2. On the routes that cost work (``/gradio_api/upload``, ``/gradio_api/queue/join``,
   ``/gradio_api/call/...``, ``/gradio_api/run/...``, and the lean ``/api/v1/predict`` of huskyai.serve.rest,
   whose body is the photo and which counts as a prediction): a per-client cap on requests in flight
   (requests being received or waiting plus events queued or running), then the per-minute rate
   limit (uploads and predictions have a budget each; a heatmap's request counts as a prediction here,
   and its own, smaller limit is applied by its handler, huskyai.serve.handlers.explainer, since only gradio
   knows which function a queue/join calls).
   Both budgets live in the app's limits store (huskyai.serve.limits.store): in this process, or in Redis,
   where one client has one budget across every replica.
3. One event per client in gradio's queue: a client's next prediction waits at the door (costing
   an idle coroutine, nothing else) until its previous one has finished (on the lean route, until its
   answer is sent). One client can therefore
   never fill the queue, and never hold more than one of the workers, however slow its photos are
   to decode; a person who clicks twice just waits for the second answer.
4. Uploads that succeed are recorded (the only files the app will ever delete); gradio's own
   refusals on those routes (file too large, queue full) are noted.

Every refusal gets an audit line through ``on_refusal`` (whose log summarises a client's refusals beyond a
few a minute); the reasons given are the middleware's own words, and gradio's answer is kept to one short
line since it may repeat the client's.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable

from huskyai.clienttext import one_line
from huskyai.serve.gradio_adapter import DIRECT_ROUTE, JOIN_ROUTE, UPLOAD_ROUTE
from huskyai.serve.limits.bodystream import (
    BodyCutOff,
    CappedBody,
    HeldResponse,
    Message,
    Receive,
    Scope,
    Send,
    content_length,
    send_json,
)
from huskyai.serve.limits.clients import client_address
from huskyai.serve.limits.ratelimit import InFlight, RateLimiter
from huskyai.serve.limits.uploads import UploadRegistry
from huskyai.serve.refusals import Refusal

UPLOAD, JOIN, DIRECT, LEAN, OTHER = "upload", "join", "direct", "lean", "other"
LEAN_PATH = "/api/v1/predict"  # huskyai.serve.rest's route, whose body is the photo
LEAN_ROUTE = re.compile(re.escape(LEAN_PATH))
_ROUTES = [(UPLOAD, UPLOAD_ROUTE), (JOIN, JOIN_ROUTE), (DIRECT, DIRECT_ROUTE), (LEAN, LEAN_ROUTE)]
SMALL_BODY = 64 * 1024  # headroom for multipart headers and JSON around a photo; the cap for any other route
MAX_FILES_PER_UPLOAD = 4  # the page sends one photo per upload
GRADIO_TEXT = 200  # characters of gradio's own refusal kept for the audit line


def route_kind(method: str, path: str) -> str:
    """Which budget a request draws on: UPLOAD, JOIN (starts a prediction), DIRECT, LEAN (a prediction whose
    body is the photo), or OTHER (free)."""
    if method != "POST":
        return OTHER
    path = path.rstrip("/")
    for kind, pattern in _ROUTES:
        if pattern.fullmatch(path):
            return kind
    return OTHER


class FairServing:
    """The ASGI middleware: wraps gradio's app (``app``) and applies the rules above to every request."""

    def __init__(self, app, *, upload_limit: int, max_in_flight: int, trusted_proxy_hops: int,
                 predictions: RateLimiter, uploads_limiter: RateLimiter, uploads: UploadRegistry,
                 queued_for: Callable[[str], int], on_refusal: Callable[[str, Refusal, str], None],
                 in_flight: InFlight | None = None, idle_timeout: float = 30.0, turn_timeout: float = 60.0):
        self.app = app
        self.caps = {UPLOAD: upload_limit + SMALL_BODY,
                     JOIN: math.ceil(upload_limit / 3) * 4 + SMALL_BODY,  # a photo inline as a data: URL
                     DIRECT: math.ceil(upload_limit / 3) * 4 + SMALL_BODY,
                     LEAN: upload_limit + SMALL_BODY,  # the photo, raw or as a form's file part
                     OTHER: SMALL_BODY}
        self.upload_limit = upload_limit
        self.max_in_flight = max_in_flight
        self.hops = trusted_proxy_hops
        self.limiters = {JOIN: predictions, LEAN: predictions, UPLOAD: uploads_limiter}
        self.uploads = uploads
        self.queued_for = queued_for
        self.on_refusal = on_refusal
        self.idle_timeout = idle_timeout
        self.turn_timeout = turn_timeout
        self.in_flight = in_flight if in_flight is not None else InFlight(predictions.store)
        self._doors: dict[str, asyncio.Lock] = {}

    def client_of(self, scope: Scope) -> str:
        peer = scope.get("client")
        forwarded = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-for"]
        return client_address(peer[0] if peer else None, forwarded, self.hops)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        kind = route_kind(scope["method"], scope["path"])
        client = self.client_of(scope)
        cap = self.caps[kind]
        declared = content_length(scope)
        if declared is not None and (declared < 0 or declared > cap):
            announced = f"{declared} bytes announced" if declared >= 0 else "an invalid Content-Length"
            return await self._refuse(send, client, 413, self._too_large_message(kind),
                                      f"request body too large: {announced}, the limit is {cap}",
                                      Refusal.BODY_TOO_LARGE)
        if kind == OTHER:  # page loads, result streams, file downloads: only the body cap applies
            return await self._forward(scope, receive, send, kind, client, cap)
        ticket = await self.in_flight.enter(client)  # counted first: two replicas cannot both see room for one
        try:
            if ticket.count - 1 + self.queued_for(client) >= self.max_in_flight:
                return await self._refuse(
                    send, client, 429,
                    f"Too many requests at once from one address: at most {self.max_in_flight} at a time. "
                    "Wait for an answer, then try again.", "in-flight limit", Refusal.IN_FLIGHT, retry_after=5)
            limiter = self.limiters.get(kind)
            wait = await limiter.acheck(client) if limiter is not None else None
            if wait is not None:
                what = "uploads" if kind == UPLOAD else "predictions"
                # on the page a photo is answered twice, its verdict and then its heatmap: say what is counted
                counted = "photos a minute from one address" if kind == UPLOAD else \
                    "answers a minute from one address (a verdict and a heatmap count one each)"
                return await self._refuse(
                    send, client, 429,
                    f"Slow down: at most {limiter.per_minute} {counted}. "
                    f"Try again in {math.ceil(wait)} s.", f"rate limit ({what})",
                    Refusal.UPLOAD_RATE_LIMIT if kind == UPLOAD else Refusal.RATE_LIMIT, retry_after=math.ceil(wait))
            if kind in (JOIN, LEAN):
                await self._in_turn(scope, receive, send, kind, client, cap)
            else:
                await self._forward(scope, receive, send, kind, client, cap)
        finally:
            await self.in_flight.leave(ticket)
            if not self.in_flight.here(client):
                self._doors.pop(client, None)

    async def _in_turn(self, scope: Scope, receive: Receive, send: Send, kind: str, client: str, cap: int) -> None:
        """Let a client's prediction in only when none of its others is queued or running (the lean route's
        prediction runs while the door is held)."""
        door = self._doors.setdefault(client, asyncio.Lock())
        async with door:  # one at a time through the door, so two waiters cannot both see an empty queue
            deadline = asyncio.get_running_loop().time() + self.turn_timeout
            while self.queued_for(client) > 0:
                if asyncio.get_running_loop().time() > deadline:
                    return await self._refuse(send, client, 429, "Your previous photo is still being answered; "
                                              "try again in a moment.", "waited too long for its turn",
                                              Refusal.WAITED_TOO_LONG, retry_after=5)
                await asyncio.sleep(0.02)
            await self._forward(scope, receive, send, kind, client, cap)  # JOIN: returns once the event is queued

    async def _forward(self, scope: Scope, receive: Receive, send: Send, kind: str, client: str, cap: int) -> None:
        body = CappedBody(receive, cap, self.idle_timeout, self._too_large_message(kind),
                          abort_on_disconnect=kind == UPLOAD)

        def hold(status: int) -> bool:  # the upload route's answer names the files: read it before passing it on
            return kind == UPLOAD or (kind in (JOIN, DIRECT) and status >= 400)  # the lean route audits its own

        async def finish(start: Message, content: bytes) -> None:
            await self._finish_held(send, start, content, kind, client)

        response = HeldResponse(send, body, hold, finish)
        try:
            await self.app(scope, body, response)
        except BodyCutOff:
            if body.cut is None:
                return  # the client went away; nobody is left to answer
        if body.cut is not None and not response.started:
            status, message, reason = body.cut
            kind = Refusal.BODY_TOO_LARGE if status == 413 else Refusal.BODY_STALLED
            await self._refuse(send, client, status, message, reason, kind)

    async def _finish_held(self, send: Send, start: Message, body: bytes, kind: str, client: str) -> None:
        """Pass on a held answer: a successful upload's files are recorded, gradio's refusals noted."""
        status = start["status"]
        if kind == UPLOAD and status == 200:
            try:
                paths = [p for p in json.loads(body) if isinstance(p, str)]
            except (ValueError, TypeError):
                paths = []
            self.uploads.record(paths)
            if len(paths) > MAX_FILES_PER_UPLOAD:
                self.uploads.discard(paths)
                return await self._refuse(send, client, 413, f"At most {MAX_FILES_PER_UPLOAD} files in one upload.",
                                          f"upload of {len(paths)} files", Refusal.TOO_MANY_FILES)
        elif status >= 400:
            text = one_line(body[:600].decode("utf-8", "replace"), GRADIO_TEXT)  # it may repeat the client's words
            full = status == 503 and kind == JOIN
            reason = "queue full" if full else f"refused by gradio: HTTP {status}"
            self.on_refusal(client, Refusal.QUEUE_FULL if full else Refusal.REFUSED_BY_GRADIO, f"{reason}: {text}")
        await send(start)
        await send({"type": "http.response.body", "body": body})

    def _too_large_message(self, kind: str) -> str:
        if kind == OTHER:
            return "The request body is too large for this route."
        return too_large_message(self.upload_limit)

    async def _refuse(self, send: Send, client: str, status: int, message: str, reason: str, kind: Refusal,
                      retry_after: int | None = None) -> None:
        self.on_refusal(client, kind, reason)
        await send_json(send, status, message, retry_after)


def too_large_message(limit: int) -> str:
    """The one refusal of a photo over the upload limit (``limit`` bytes), here and at the lean route."""
    return f"The request is too large: a photo may be at most {limit // (1024 * 1024)} MB."
