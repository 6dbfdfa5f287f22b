"""The OpenAPI 3.1 description of the lean route (POST /api/v1/predict), served at /api/v1/openapi.json.

It is written out here rather than generated from the route (a starlette route has no types to read) and is
checked against the route's real answers (tests/serve/test_openapi.py): the request body (the photo's bytes, or
one file part of a form), the JSON answer for each HUSKYAI_API_DETAIL (the one this server gives is named in
``x-huskyai-api-detail``), and every refusal, each as {"detail", "error"} with its status. The classes and
limits in it are this server's: the model's labels, the upload limit, the rate limit. A certified answer
(``?certify=1``) is the other shape each answer schema allows (its schema is written into each, so that every
answer schema stands alone), and is also given as the component "Certified".
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from huskyai.inference.certify import ABSTAIN
from huskyai.inference.disclosure import ROUND_STEP
from huskyai.serve.limits.middleware import LEAN_PATH
from huskyai.settings import Settings

OPENAPI_PATH = "/api/v1/openapi.json"
ANSWER_SCHEMAS = {"full": "AnswerFull", "rounded": "AnswerRounded", "label": "AnswerLabel"}  # by HUSKYAI_API_DETAIL


def openapi_document(classes: list[str], positive: str, settings: Settings) -> dict[str, Any]:
    """The description of POST /api/v1/predict for a model of ``classes`` served with ``settings``."""
    mb = settings.upload_limit // (1024 * 1024)
    steps = sorted({round(i * ROUND_STEP, 6) for i in range(round(1 / ROUND_STEP) + 1)})
    scores = {"type": "object", "description": "every class's probability (they add up to 1)",
              "properties": {c: {"type": "number", "minimum": 0, "maximum": 1} for c in classes},
              "required": list(classes), "additionalProperties": False}
    rounded_scores = dict(scores, description=f"every class's probability, rounded to the nearest {ROUND_STEP}",
                          properties={c: {"enum": steps} for c in classes})
    label = {"type": "string", "enum": list(classes),
             "description": f"the decided class: {positive!r} when P({positive}) reaches the model card's threshold"}

    def answer(verdict_pattern: str, example: str, with_scores: dict | None) -> dict:
        schema = {"type": "object", "properties": {"label": label, "verdict": {
            "type": "string", "pattern": verdict_pattern, "description": "the answer in words", "example": example}},
            "required": ["label", "verdict"], "additionalProperties": False}
        if with_scores is not None:
            schema["properties"]["scores"] = with_scores
            schema["required"].append("scores")
        return schema

    refusal = {"type": "object", "properties": {"detail": {"type": "string"}, "error": {"type": "string"}},
               "required": ["detail", "error"], "description": "why the photo was not answered, in one line "
               "(detail and error say the same)"}
    retry_after = {"Retry-After": {"description": "seconds to wait before asking again",
                                   "schema": {"type": "integer", "minimum": 0}}}

    def refused(description: str, headers: dict | None = None) -> dict:
        response = {"description": description,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Refusal"}}}}
        return response | ({"headers": headers} if headers else {})

    certified = {"type": "object", "description": "a certified answer (?certify=1): randomized smoothing on the "
                 "noise-trained model, proven with probability 1 - alpha over the noise drawn",
                 "properties": {
                     "label": {"type": "string", "enum": [*classes, ABSTAIN], "description": "the certified class, "
                               "or \"abstain\" when the noisy answers were too split to prove either"},
                     "certified": {"type": "boolean", "description": "false when abstaining"},
                     "radius": {"type": "number", "minimum": 0, "description": "no change of the model's input of "
                                "at most this L2 norm flips the label (pixels in [0, 1] at input_size x input_size; "
                                "0 when abstaining; rounded down)"},
                     "sigma": {"type": "number", "exclusiveMinimum": 0, "description": "the Gaussian noise"},
                     "n0": {"type": "integer", "minimum": 1, "description": "noise samples that chose the class"},
                     "n": {"type": "integer", "minimum": 1, "description": "noise samples that proved it (the "
                           f"server's: {settings.certify_n})"},
                     "alpha": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
                     "norm": {"const": "L2"},
                     "input_size": {"type": "integer", "minimum": 1},
                     "verdict": {"type": "string", "description": "the answer in words"}},
                 "required": ["label", "certified", "radius", "sigma", "n0", "n", "alpha", "norm", "input_size",
                              "verdict"], "additionalProperties": False}

    def or_certified(schema: dict) -> dict:
        return {"oneOf": [schema, certified]}

    detail = settings.api_detail
    binary = {"type": "string", "format": "binary", "maxLength": settings.upload_limit}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Husky AI", "version": "1",
                 "description": "Is this a husky? One photo in, one JSON answer out. Limits per client address: "
                                f"{settings.rate_limit or 'no'} predictions a minute (shared with the page), "
                                f"{settings.max_in_flight} requests at a time, photos up to {mb} MB."},
        "paths": {LEAN_PATH: {"post": {
            "operationId": "predict",
            "summary": "Classify one photo",
            "parameters": [{"name": "name", "in": "query", "required": False,
                            "description": "how messages name the photo (cut to 120 characters)",
                            "schema": {"type": "string"}},
                           {"name": "certify", "in": "query", "required": False,
                            "description": "1: a certified answer (label or abstain, and its L2 radius) instead; "
                                           f"slower, at most {settings.certify_rate_limit or 'any number of'} a "
                                           "minute per client, and only where the server has a noise-trained model",
                            "schema": {"enum": ["1", "true", "yes", "on", "0", "false", "no", "off", ""]}}],
            "requestBody": {"required": True, "description": "the photo: its bytes as the body (any Content-Type "
                            "but multipart; JPEG, PNG, WebP, GIF, BMP, TIFF), or a form with exactly one file part",
                            "content": {
                                "application/octet-stream": {"schema": binary},
                                "image/*": {"schema": binary},
                                "multipart/form-data": {"schema": {
                                    "type": "object", "properties": {"file": binary}, "required": ["file"]},
                                    "encoding": {"file": {"contentType": "image/*, application/octet-stream"}}}}},
            "responses": {
                "200": {"description": f"the answer, told as far as HUSKYAI_API_DETAIL allows (this server: {detail})",
                        "content": {"application/json": {"schema": {
                            "$ref": f"#/components/schemas/{ANSWER_SCHEMAS[detail]}"}}}},
                "400": refused("no photo: an empty body, or a form without exactly one file part; or a certify= "
                               "that is neither on nor off"),
                "408": {"description": "the request body stalled or trickled; the connection is closed (the answer "
                                       "is JSON, or one line of plain text when the server's own deadline cut it)",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Refusal"}},
                                    "text/plain": {"schema": {"type": "string"}}}},
                "413": refused(f"the photo is over the upload limit ({mb} MB)"),
                "422": refused("the photo cannot be read: not an image, truncated, or over the pixel limits"),
                "429": refused("over this client's limits: predictions a minute, certified answers a minute, or "
                               "requests at a time", retry_after),
                "503": refused("the server is starting (the model is being loaded and verified; Retry-After "
                               "says when to ask again); or, for ?certify=1, it has no noise-trained model, is still "
                               "loading it (Retry-After), or is busy with other certified answers (Retry-After)"),
            },
            "x-huskyai-api-detail": detail,
        }}},
        "components": {"schemas": {
            "AnswerFull": or_certified(answer(r"^[^,]+, \d{1,3}%$", f"{positive.capitalize()}, 97%", scores)),
            "AnswerRounded": or_certified(answer(r"^[^,]+, about \d{1,3}%$", f"{positive.capitalize()}, about 100%",
                                                 rounded_scores)),
            "AnswerLabel": or_certified(answer(r"^[^,]+$", positive.capitalize(), None)),
            "Certified": certified,
            "Refusal": refusal,
        }},
    }


def openapi_route(settings: Settings, classes: list[str], positive: str) -> Route:
    """GET /api/v1/openapi.json."""
    document = openapi_document(classes, positive, settings)

    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse(document)

    return Route(OPENAPI_PATH, endpoint, methods=["GET"])
