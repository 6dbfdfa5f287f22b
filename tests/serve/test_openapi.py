"""The OpenAPI description of /api/v1/predict, served at /api/v1/openapi.json, checked against the route's real
answers: each answer for each HUSKYAI_API_DETAIL, and each refusal, validated against the schema the served
document gives for its status (jsonschema), on the route with the fairness middleware in front (in-process ASGI),
the start-up listener's 503, and a stalled body on the served app."""

from __future__ import annotations

import io
import socket
import time

import httpx
import jsonschema
import pytest
from serve.helpers import ask, lean_app, served

from conftest import bad_files, jpeg_bytes, skimage_photo
from huskyai.audit import AuditLog
from huskyai.serve.context import ServeContext
from huskyai.serve.health import LOADING, Readiness
from huskyai.serve.openapi import ANSWER_SCHEMAS, OPENAPI_PATH
from huskyai.serve.rest import API_PATH
from huskyai.serve.startup import starting_app
from huskyai.settings import API_DETAILS, Settings

STATUSES = {"200", "400", "408", "413", "422", "429", "503"}


def app_for(model, tmp_path, **settings):
    """The lean route and its description around ``model`` with ``Settings(**settings)``."""
    return lean_app(ServeContext(model, Settings(**settings), AuditLog(tmp_path / "audit.jsonl")))


def schema_for(document: dict, status: str, content_type: str = "application/json") -> dict:
    schema = document["paths"][API_PATH]["post"]["responses"][status]["content"][content_type]["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def check(document: dict, response: httpx.Response) -> None:
    """``response`` is one the document describes: its status, its content type, its body's schema, its headers."""
    status = str(response.status_code)
    described = document["paths"][API_PATH]["post"]["responses"]
    assert status in described, status
    content_type = response.headers["content-type"].split(";")[0]
    body = response.json() if content_type == "application/json" else response.text
    jsonschema.validate(body, schema_for(document, status, content_type))
    for header in described[status].get("headers", {}):
        assert header.lower() in response.headers, (status, header)


@pytest.mark.parametrize("detail", API_DETAILS)
def test_each_api_detail_answers_as_its_schema_says_and_as_no_other(shipped, tmp_path, detail):
    app = app_for(shipped, tmp_path, api_detail=detail, rate_limit=0)
    (served_doc,) = ask(app, [{"method": "GET", "url": OPENAPI_PATH}])
    document = served_doc.json()
    assert document["openapi"] == "3.1.0" and document["paths"][API_PATH]["post"]["x-huskyai-api-detail"] == detail
    assert set(document["paths"][API_PATH]["post"]["responses"]) == STATUSES
    assert set(ANSWER_SCHEMAS) == set(API_DETAILS)
    photos = [jpeg_bytes(skimage_photo(n)) for n in ("chelsea", "coffee", "astronaut")]
    form = io.BytesIO(photos[0])
    answers = ask(app, [
        {"method": "POST", "url": API_PATH, "content": photos[0], "headers": {"content-type": "image/jpeg"}},
        {"method": "POST", "url": API_PATH, "content": photos[1],
         "headers": {"content-type": "application/octet-stream"}},
        {"method": "POST", "url": API_PATH, "content": photos[2]},
        {"method": "POST", "url": API_PATH, "files": {"file": ("rex.jpg", form, "image/jpeg")}},
    ])
    for answer in answers:
        assert answer.status_code == 200, answer.text
        check(document, answer)
        for other, name in ANSWER_SCHEMAS.items():  # the three shapes cannot be mistaken for one another
            fits = jsonschema.Draft202012Validator(document["components"]["schemas"][name]).is_valid(answer.json())
            assert fits == (other == detail), (other, answer.json())
    for content_type in ("application/octet-stream", "image/*", "multipart/form-data"):  # the bodies tried above
        assert content_type in document["paths"][API_PATH]["post"]["requestBody"]["content"]


def test_every_refusal_is_described(shipped, tmp_path):
    app = app_for(shipped, tmp_path, rate_limit=3, upload_limit=1024 * 1024)
    document = ask(app, [{"method": "GET", "url": OPENAPI_PATH}])[0].json()
    photo = jpeg_bytes(skimage_photo("coffee"))
    refusals = ask(app, [
        {"method": "POST", "url": API_PATH, "content": b""},  # 400: no photo
        {"method": "POST", "url": API_PATH, "files": {"a": ("a.txt", b"x", "text/plain"),
                                                      "b": ("b.txt", b"y", "text/plain")}},  # 400: two files
        {"method": "POST", "url": API_PATH, "content": b"\xff" * (2 * 1024 * 1024)},  # 413, before any budget
        {"method": "POST", "url": API_PATH, "content": bad_files()["text.jpg"]},  # 422: the third of 3 a minute
        {"method": "POST", "url": API_PATH, "content": photo},  # 429
    ])
    assert [r.status_code for r in refusals] == [400, 400, 413, 422, 429]
    for response in refusals:
        check(document, response)
    (starting,) = ask(starting_app(Readiness(LOADING)), [{"method": "POST", "url": API_PATH, "content": photo}])
    assert starting.status_code == 503
    check(document, starting)


@pytest.mark.slow  # serves the app
def test_a_stalled_body_is_described(shipped, tmp_path):
    with served(shipped, tmp_path, body_timeout=1) as server:
        document = httpx.get(f"{server.url}{OPENAPI_PATH.lstrip('/')}").json()
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                      b"Content-Length: 5000\r\n\r\n" + b"\xff" * 10)
            s.settimeout(10)
            started, raw = time.monotonic(), b""
            while chunk := s.recv(65536):
                raw += chunk
        assert time.monotonic() - started < 5
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().lower().split("\r\n")[1:])
    assert head.startswith(b"HTTP/1.1 408")
    response = httpx.Response(408, headers={"content-type": headers["content-type"]}, content=body)
    check(document, response)
