"""A lean HTTP API for scripted clients, on the app's own server: one request in, one JSON answer out.

    curl --data-binary @photo.jpg -H "Content-Type: image/jpeg" http://127.0.0.1:7860/api/v1/predict
    -> {"label": "husky", "verdict": "Husky, 97%", "scores": {"husky": 0.97, "not_husky": 0.03}}

gradio's API costs three requests a photo (upload as multipart, join the queue, read the event stream)
and about 75 ms of Python in the event loop; this route reads the raw body once and answers. It is
mounted on gradio's FastAPI app, so the fairness middleware (huskyai.serve.limits.middleware: body cap, rate limit,
requests in flight, one prediction at a time per client) runs in front of it as in front of gradio's
routes; it predicts through the same call as the page (the shared engine queue when it is on) and writes
the same audit line. ``?name=`` names the photo in messages. The answer tells what HUSKYAI_API_DETAIL
allows: with "label", no probability ("scores" is absent). A photo that cannot be read gets HTTP 422
with the reason; an empty body HTTP 400.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from huskyai.audit import AuditLog, audited_predict
from huskyai.clienttext import client_text
from huskyai.errors import InvalidImageError
from huskyai.inference import disclosure
from huskyai.inference.predictor import Prediction, Predictor
from huskyai.serve.limits.clients import client_address
from huskyai.settings import Settings

API_PATH = "/api/v1/predict"
SOURCE = "api"
MAX_NAME = 120  # characters of ?name= kept (huskyai.clienttext): the client's own text, echoed in messages and the log


def answer(pred: Prediction, positive: str, detail: str) -> dict:
    """The JSON answer, told as far as ``detail`` (HUSKYAI_API_DETAIL) allows."""
    told = {"label": pred.label, "verdict": disclosure.verdict(pred, positive, detail)}
    if detail != "label":
        told["scores"] = disclosure.label_value(pred, detail)
    return told


def predict_route(model: Predictor, settings: Settings, audit: AuditLog,
                  predict: Callable[..., Prediction]) -> Route:
    """POST API_PATH: the photo's bytes as the body; at most ``settings.workers`` predictions at once."""
    from huskyai.serve.handlers import record_refusal  # imports gradio: answer() stays light without it

    workers: list[anyio.CapacityLimiter] = []  # made on the first request: it belongs to the server's event loop

    async def endpoint(request: Request) -> JSONResponse:
        data = await request.body()  # the middleware has capped it
        forwarded = request.headers.getlist("x-forwarded-for")
        peer = request.client.host if request.client else None
        client = audit.client_id(client_address(peer, forwarded, settings.trusted_proxy_hops))
        if not data:
            record_refusal(audit, model, client, "empty request body", source=SOURCE)
            return _refusal(400, "Send the photo's bytes as the request body "
                                 "(for example: curl --data-binary @photo.jpg URL).")
        name = client_text(request.query_params.get("name"), MAX_NAME)
        if not workers:
            workers.append(anyio.CapacityLimiter(settings.workers))
        call = functools.partial(audited_predict, model, data, name=name, source=SOURCE, client=client, log=audit,
                                 predict=predict)
        try:
            pred = await anyio.to_thread.run_sync(call, limiter=workers[0])
        except InvalidImageError as err:  # audited by audited_predict
            return _refusal(422, str(err))
        return JSONResponse(answer(pred, model.positive, settings.api_detail))

    return Route(API_PATH, endpoint, methods=["POST"])


def _refusal(status: int, message: str) -> JSONResponse:
    """A refusal in the middleware's shape ("detail" and "error"), so a client reads every refusal one way."""
    return JSONResponse({"detail": message, "error": message}, status_code=status)
