"""A lean HTTP API for scripted clients, on the app's own server: one request in, one JSON answer out.

    curl --data-binary @photo.jpg -H "Content-Type: image/jpeg" http://127.0.0.1:7860/api/v1/predict
    curl -F file=@photo.jpg http://127.0.0.1:7860/api/v1/predict
    -> {"label": "husky", "verdict": "Husky, 97%", "scores": {"husky": 0.97, "not_husky": 0.03}}

gradio's API costs three requests a photo (upload as multipart, join the queue, read the event stream)
and more Python in the event loop; this route reads the body once and answers. The body is the
photo's bytes, or a multipart form with one file part: ``curl -F``, the usual upload form (requests'
``files=``, an HTML form), is what people type first, and refusing it would only send them back to retype
it; starlette parses the form within the same body cap. It is
mounted on gradio's FastAPI app, so the fairness middleware (huskyai.serve.limits.middleware: body cap, rate limit,
requests in flight, one prediction at a time per client) runs in front of it as in front of gradio's
routes; it predicts through the same call as the page (the shared engine queue when it is on) and writes
the same audit line. ``?name=`` names the photo in messages. The answer tells what HUSKYAI_API_DETAIL
allows: with "label", no probability ("scores" is absent). A photo that cannot be read gets HTTP 422
with the reason; an empty body, or a form without exactly one file, HTTP 400 saying how to send a photo.
Its OpenAPI description (every answer and refusal) is huskyai.serve.openapi's, served at /api/v1/openapi.json.

``?certify=1`` asks for a certified answer instead (huskyai.inference.certify, on the noise-trained model the
server holds): the label or "abstain", the L2 radius within which no change of the model's input flips it, and
the noise, samples and alpha it was proven with. The server decides the number of samples (HUSKYAI_CERTIFY_N);
one costs about that many predictions, so certified answers have their own, smaller per-client budget
(HUSKYAI_CERTIFY_RATE_LIMIT, shared with the page's), run one at a time, and are audited like any answer. A
server without a noise-trained model (or still loading it) answers 503 saying so.
"""

from __future__ import annotations

import functools
import math

import anyio
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from huskyai.audit import audited_predict
from huskyai.clienttext import client_text
from huskyai.errors import InvalidImageError
from huskyai.inference import disclosure
from huskyai.inference.certify import Certificate, floor_to
from huskyai.inference.predictor import Prediction
from huskyai.serve.context import CertifyBusy, ServeContext
from huskyai.serve.limits.middleware import LEAN_PATH, too_large_message
from huskyai.serve.metrics import REST
from huskyai.serve.refusals import Refusal

API_PATH = LEAN_PATH
SOURCE = "api"
MAX_NAME = 120  # characters of ?name= kept (huskyai.clienttext): the client's own text, echoed in messages and the log
MULTIPART = "multipart/form-data"
MAX_FORM_FIELDS = 4  # a form carries the photo, and perhaps a name
CERTIFY_SOURCE = "api-certify"  # the audit log's source for a certified answer
CERTIFY_QUERY = "certify"
CERTIFY_ON, CERTIFY_OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")
CERTIFY_WAITING = 4  # certified answers that may wait for the one being computed; more are told to come back
HOW_TO_SEND = ("Send one photo: its bytes as the request body (curl --data-binary @photo.jpg URL), "
               "or one file part of a form (curl -F file=@photo.jpg URL).")


def answer(pred: Prediction, positive: str, detail: str) -> dict:
    """The JSON answer, told as far as ``detail`` (HUSKYAI_API_DETAIL) allows."""
    told = {"label": pred.label, "verdict": disclosure.verdict(pred, positive, detail)}
    if detail != "label":
        told["scores"] = disclosure.label_value(pred, detail)
    return told


def certificate_answer(cert: Certificate) -> dict:
    """The JSON of a certified answer: the radius rounded down (never more than was proven)."""
    return {"label": cert.label, "certified": cert.certified, "radius": floor_to(cert.radius, 4),
            "sigma": cert.sigma, "n0": cert.n0, "n": cert.n, "alpha": cert.alpha, "norm": "L2",
            "input_size": cert.input_size, "verdict": cert.describe()}


def predict_route(ctx: ServeContext) -> Route:
    """POST API_PATH: the photo's bytes as the body, or one file part of a multipart form; at most
    ``settings.workers`` predictions at once."""
    workers: list[anyio.CapacityLimiter] = []  # made on the first request: it belongs to the server's event loop
    certifying: list[anyio.CapacityLimiter] = []  # likewise: one certification at a time from this route
    waiting = [0]  # certified answers waiting for it

    async def endpoint(request: Request) -> JSONResponse:
        with ctx.metrics.timed(REST):
            return await answered(request)

    async def answered(request: Request) -> JSONResponse:
        client = ctx.client(request)
        asked = (request.query_params.get(CERTIFY_QUERY) or "").strip().lower()
        if asked not in CERTIFY_ON + CERTIFY_OFF:
            ctx.refused(client, Refusal.BAD_UPLOAD, "certify= neither on nor off", source=SOURCE)
            return _refusal(400, "certify=1 asks for a certified answer (certify=0, or nothing, for a plain one)")
        try:
            data, sent_name = await _photo(request)
        except _NoPhoto as err:
            ctx.refused(client, Refusal.NO_PHOTO, err.reason, source=SOURCE)
            return _refusal(400, err.message)
        if len(data) > ctx.settings.upload_limit:  # the middleware's cap leaves room for a form's headers
            ctx.refused(client, Refusal.BODY_TOO_LARGE, f"request body too large: a photo of {len(data)} bytes",
                        source=SOURCE)
            return _refusal(413, too_large_message(ctx.settings.upload_limit))
        name = client_text(request.query_params.get("name") or sent_name, MAX_NAME)
        if asked in CERTIFY_ON:
            return await certified(request, client, data, name)
        if not workers:
            workers.append(anyio.CapacityLimiter(ctx.settings.workers))
        call = functools.partial(audited_predict, ctx.model, data, name=name, source=SOURCE, client=client,
                                 log=ctx.audit, predict=ctx.predict)
        try:
            pred = await anyio.to_thread.run_sync(call, limiter=workers[0])
        except InvalidImageError as err:  # audited by audited_predict
            ctx.metrics.refused(Refusal.UNREADABLE_PHOTO)
            return _refusal(422, str(err))
        ctx.metrics.answered(REST, pred.label)
        return JSONResponse(answer(pred, ctx.model.positive, ctx.settings.api_detail))

    async def certified(request: Request, client: str, data: bytes, name: str) -> JSONResponse:
        """A certified answer, within the certification budget; 503 without a noise-trained model."""
        unavailable = ctx.certify_unavailable()
        if unavailable is not None:
            message, soon = unavailable
            ctx.refused(client, Refusal.FAILED, "no certified answers: " + message, source=CERTIFY_SOURCE)
            return _refusal(503, message, retry_after=5 if soon else None)
        wait = await ctx.certify_limiter.acheck(ctx.request_address(request))
        if wait is not None:
            ctx.refused(client, Refusal.RATE_LIMIT, "rate limit (certified answers)", source=CERTIFY_SOURCE)
            return _refusal(429, f"Slow down: at most {ctx.certify_limiter.per_minute} certified answers a minute "
                            f"from one address (each costs about {ctx.settings.certify_n} predictions). Try again "
                            f"in {math.ceil(wait)} s.", retry_after=math.ceil(wait))
        if waiting[0] >= CERTIFY_WAITING:
            ctx.refused(client, Refusal.QUEUE_FULL, "certified answers: too many waiting", source=CERTIFY_SOURCE)
            return _refusal(503, "The server is busy with other certified answers; try again in a minute.",
                            retry_after=60)
        if not certifying:
            certifying.append(anyio.CapacityLimiter(1))
        call = functools.partial(ctx.certify, data, name=name, source=CERTIFY_SOURCE, client=client)
        waiting[0] += 1
        try:
            cert = await anyio.to_thread.run_sync(call, limiter=certifying[0])
        except InvalidImageError as err:  # audited by ctx.certify
            ctx.metrics.refused(Refusal.UNREADABLE_PHOTO)
            return _refusal(422, str(err))
        except CertifyBusy as err:
            ctx.refused(client, Refusal.QUEUE_FULL, "certified answers: busy", source=CERTIFY_SOURCE)
            return _refusal(503, f"{str(err).capitalize()}.", retry_after=60)
        finally:
            waiting[0] -= 1
        ctx.metrics.answered(REST, cert.label)
        return JSONResponse(certificate_answer(cert))

    return Route(API_PATH, endpoint, methods=["POST"])


class _NoPhoto(Exception):
    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.message, self.reason = message, reason


async def _photo(request: Request) -> tuple[bytes, str | None]:
    """The photo's bytes and the name its form part gives (None for a raw body); _NoPhoto when there is none."""
    if not request.headers.get("content-type", "").lower().startswith(MULTIPART):
        data = await request.body()  # the middleware has capped it
        if not data:
            raise _NoPhoto(HOW_TO_SEND, "empty request body")
        return data, None
    try:
        async with request.form(max_files=1, max_fields=MAX_FORM_FIELDS) as form:
            files = [v for v in form.values() if isinstance(v, UploadFile)]
            if len(files) != 1:
                raise _NoPhoto(HOW_TO_SEND, "a multipart form without a file part")
            return await files[0].read(), files[0].filename
    except (MultiPartException, HTTPException):  # starlette raises the second for the first inside an app
        raise _NoPhoto(HOW_TO_SEND, "a multipart form that cannot be read, or with more than one file") from None


def _refusal(status: int, message: str, retry_after: int | None = None) -> JSONResponse:
    """A refusal in the middleware's shape ("detail" and "error"), so a client reads every refusal one way."""
    headers = {"retry-after": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"detail": message, "error": message}, status_code=status, headers=headers)
