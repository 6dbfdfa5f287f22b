"""Certified answers on the lean route, POST /api/v1/predict?certify=1, in-process behind the fairness middleware:
the certificate's JSON as the served OpenAPI document describes it, n decided by the server, the certification
budget and its 429, one certification at a time (503 when busy), 503 without (or while loading) a noise-trained
model, an audit line for each; and the serving context's background load of that model."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

import httpx
import jsonschema
import pytest
from certify_helpers import SIGMA, SIZE, noise_trained_export, photo
from serve.helpers import audit_lines
from starlette.applications import Starlette

from conftest import EXPORT
from huskyai.api import load
from huskyai.audit import AuditLog
from huskyai.errors import IntegrityError
from huskyai.serve import context as serve_context
from huskyai.serve.context import ServeContext
from huskyai.serve.openapi import OPENAPI_PATH, openapi_route
from huskyai.serve.rest import API_PATH, CERTIFY_SOURCE, predict_route
from huskyai.serve.server import fair_serving
from huskyai.serve.startup import BackgroundModel
from huskyai.settings import Settings
from huskyai.trust import exports

CERTIFY = f"{API_PATH}?certify=1"


@pytest.fixture(scope="session")
def robust_export(tmp_path_factory, toy_data):
    return noise_trained_export(tmp_path_factory, toy_data)


@pytest.fixture(scope="module")
def robust(robust_export):
    return load(robust_export)


def lean_app(ctx: ServeContext) -> Starlette:
    """The lean route and its description behind the fairness middleware, as the app mounts them."""
    return Starlette(routes=[predict_route(ctx), openapi_route(ctx.settings, ctx.model.classes, ctx.model.positive)],
                     middleware=[fair_serving(ctx, None)])


def ask(app, requests: list[dict]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            return [await c.request(**r) for r in requests]
    return asyncio.run(run())


def post(url: str = CERTIFY, name: str = "coffee") -> dict:
    return {"method": "POST", "url": url, "content": photo(name), "headers": {"content-type": "image/jpeg"}}


def context(model, tmp_path, robust: BackgroundModel | None = None, **settings) -> ServeContext:
    return ServeContext(model, Settings(**({"rate_limit": 0} | settings)), AuditLog(tmp_path / "audit.jsonl"),
                        robust=robust)


def described(document: dict, response: httpx.Response) -> None:
    """``response`` is what the served document says its status answers with (body schema and headers)."""
    answer = document["paths"][API_PATH]["post"]["responses"][str(response.status_code)]
    schema = answer["content"]["application/json"]["schema"]
    schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    jsonschema.validate(response.json(), schema)
    for header in answer.get("headers", {}):
        assert header.lower() in response.headers


# ---- without a noise-trained model ------------------------------------------------------------------------------

def test_a_server_without_a_noise_trained_model_says_so_and_still_answers_plainly(shipped, tmp_path):
    ctx = context(shipped, tmp_path)
    assert ctx.robust is None  # Settings() asks for none; the app's settings ask for the shipped "robust"
    app = lean_app(ctx)
    document, refused, plain = ask(app, [{"method": "GET", "url": OPENAPI_PATH}, post(), post(API_PATH)])
    assert refused.status_code == 503 and "retry-after" not in refused.headers
    assert refused.json()["error"].startswith("This server gives no certified answers: it has no model trained "
                                              "under noise")
    described(document.json(), refused)
    assert plain.status_code == 200 and plain.json()["label"] == "not_husky"
    lines = audit_lines(tmp_path / "audit.jsonl")
    assert [(x["source"], x["refused"] is not None) for x in lines] == [(CERTIFY_SOURCE, True), ("api", False)]


def test_while_the_model_is_loading_the_answer_is_503_with_retry_after(shipped, tmp_path):
    never_done = Future()
    refused = ask(lean_app(context(shipped, tmp_path, robust=BackgroundModel(never_done))), [post()])[0]
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert "still being loaded" in refused.json()["error"]


def test_a_refused_model_is_named_in_the_answer(shipped, tmp_path):
    refused_model = Future()
    refused_model.set_exception(IntegrityError("export-robust/model.json: the shipped model was changed"))
    refused = ask(lean_app(context(shipped, tmp_path, robust=BackgroundModel(refused_model))), [post()])[0]
    assert refused.status_code == 503
    assert refused.json()["error"] == ("This server gives no certified answers: its noise-trained model was refused "
                                       "(export-robust/model.json: the shipped model was changed)")


def test_certify_must_be_on_or_off(shipped, tmp_path):
    refused = ask(lean_app(context(shipped, tmp_path)), [post(f"{API_PATH}?certify=maybe")])[0]
    assert refused.status_code == 400 and "certify=1 asks for a certified answer" in refused.json()["error"]


def test_a_robust_model_that_cannot_certify_is_refused_in_the_background(shipped, tmp_path, capfd):
    ctx = context(shipped, tmp_path, robust_model=str(EXPORT))  # the fast model: no noise_sigma on its card
    assert ctx.robust.get(timeout=60) is None
    assert "not trained under noise" in ctx.robust.problem
    assert "warning: no certified answers: this model was not trained under noise" in capfd.readouterr().err
    assert "its noise-trained model was refused (this model was not trained" in ctx.certify_unavailable()[0]


def test_the_shipped_robust_model_is_loaded_only_when_it_is_there(shipped, tmp_path, monkeypatch):
    monkeypatch.setitem(exports.SHIPPED_FOLDERS, "robust", tmp_path / "export-robust")
    assert context(shipped, tmp_path, robust_model="robust").robust is None


# ---- with one ----------------------------------------------------------------------------------------------------

@pytest.mark.slow  # trains the noise-trained export (about 25 s, once per run)
def test_a_certified_answer_is_described_audited_and_its_n_is_the_servers(shipped, robust, robust_export, tmp_path):
    app = lean_app(context(shipped, tmp_path, robust=BackgroundModel.ready(robust), certify_n=60))
    document, answer = ask(app, [{"method": "GET", "url": OPENAPI_PATH},
                                 post(f"{CERTIFY}&n=1000000&name=cup.jpg")])
    assert answer.status_code == 200, answer.text
    told = answer.json()
    assert (told["n"], told["n0"], told["sigma"], told["alpha"], told["input_size"]) == (60, 100, SIGMA, 0.001, SIZE)
    assert told["label"] in ("husky", "not_husky", "abstain") and told["certified"] == (told["label"] != "abstain")
    assert told["verdict"].startswith(("Husky, certified", "Not a husky, certified", "No certified answer"))
    described(document.json(), answer)
    jsonschema.validate(told, document.json()["components"]["schemas"]["Certified"])
    certify_parameter = document.json()["paths"][API_PATH]["post"]["parameters"][1]
    assert certify_parameter["name"] == "certify" and "1" in certify_parameter["schema"]["enum"]
    (line,) = audit_lines(tmp_path / "audit.jsonl")
    assert (line["source"], line["label"], line["refused"]) == (CERTIFY_SOURCE, told["label"], None)
    assert line["model_sha256"] == exports.sha256((robust_export / "model.json").read_bytes())


@pytest.mark.slow  # trains the noise-trained export (about 25 s, once per run)
def test_certified_answers_have_their_own_budget(shipped, robust, tmp_path):
    app = lean_app(context(shipped, tmp_path, robust=BackgroundModel.ready(robust), certify_n=20,
                           certify_rate_limit=1))
    document, first, second, plain = ask(app, [{"method": "GET", "url": OPENAPI_PATH}, post(), post(),
                                               post(API_PATH)])
    assert first.status_code == 200 and second.status_code == 429 and plain.status_code == 200
    assert second.json()["error"].startswith("Slow down: at most 1 certified answers a minute from one address "
                                             "(each costs about 20 predictions)")
    assert int(second.headers["retry-after"]) > 0
    described(document.json(), second)
    lines = audit_lines(tmp_path / "audit.jsonl")
    assert [(x["source"], x["refused"]) for x in lines] == [
        (CERTIFY_SOURCE, None), (CERTIFY_SOURCE, "rate limit (certified answers)"), ("api", None)]


@pytest.mark.slow  # trains the noise-trained export (about 25 s, once per run)
def test_one_certification_at_a_time_and_503_when_the_engine_stays_busy(shipped, robust, tmp_path, monkeypatch):
    ctx = context(shipped, tmp_path, robust=BackgroundModel.ready(robust), certify_n=20)
    monkeypatch.setattr(serve_context, "CERTIFY_WAIT", 0.2)
    with ctx._certifying:  # another certification holds the engine
        busy = ask(lean_app(ctx), [post()])[0]
    assert busy.status_code == 503 and busy.headers["retry-after"] == "60"
    assert busy.json()["error"] == "The server is busy with other certified answers; try again in a minute."
    assert ask(lean_app(ctx), [post()])[0].status_code == 200  # free again


@pytest.mark.slow  # trains the noise-trained export (about 25 s, once per run)
def test_the_context_loads_the_robust_model_in_the_background_and_times_it(shipped, robust_export, tmp_path):
    ctx = context(shipped, tmp_path, robust_model=str(robust_export), certify_n=900)
    model = ctx.robust.get(timeout=60)
    assert model is not None and model.noise_sigma == SIGMA and ctx.certify_unavailable() is None
    assert 0 < ctx.robust.seconds_per_sample < 1
    assert ctx.estimated_certify_seconds() == pytest.approx(1000 * ctx.robust.seconds_per_sample)
    robust_main = load(robust_export)
    assert context(robust_main, tmp_path, robust_model="robust").certifier() is robust_main  # no second load


def test_the_settings_of_certified_answers(monkeypatch):
    from huskyai.errors import SettingsError

    for name in ("HUSKYAI_ROBUST_MODEL", "HUSKYAI_CERTIFY_N", "HUSKYAI_CERTIFY_RATE_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert (settings.robust_model, settings.certify_n, settings.certify_rate_limit) == ("robust", 1000, 2)
    assert Settings().robust_model is None  # a context built by hand loads nothing
    monkeypatch.setenv("HUSKYAI_ROBUST_MODEL", "off")
    assert Settings.from_env().robust_model is None
    monkeypatch.setenv("HUSKYAI_ROBUST_MODEL", "/srv/models/robust")
    monkeypatch.setenv("HUSKYAI_CERTIFY_RATE_LIMIT", "0")
    assert (Settings.from_env().robust_model, Settings.from_env().certify_rate_limit) == ("/srv/models/robust", 0)
    for n, fits in (("100", True), ("10000", True), ("99", False), ("1000000", False)):
        monkeypatch.setenv("HUSKYAI_CERTIFY_N", n)
        if fits:
            assert Settings.from_env().certify_n == int(n)
        else:
            with pytest.raises(SettingsError, match="HUSKYAI_CERTIFY_N"):
                Settings.from_env()
