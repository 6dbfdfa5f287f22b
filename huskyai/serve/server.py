"""Run the page: gradio's server with connection deadlines and the fairness middleware in front, the upload
sweeper, and a clean stop.

Start the app through :func:`huskyai.settings.serve` (``python app.py``, ``python -m huskyai serve``),
which loads the model and calls :func:`launch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import gradio as gr
from fastapi.middleware import Middleware

from huskyai.audit import AuditLog
from huskyai.inference.batching import shared_predict
from huskyai.inference.predictor import Predictor
from huskyai.serve.handlers import record_refusal, request_client
from huskyai.serve.limits.connections import ConnectionGuard
from huskyai.serve.limits.middleware import FairServing
from huskyai.serve.limits.ratelimit import RateLimiter
from huskyai.serve.limits.uploads import UploadRegistry
from huskyai.serve.page import CSS, build_demo
from huskyai.serve.rest import predict_route
from huskyai.settings import Settings


def launch(model: Predictor, settings: Settings) -> None:
    """Serve ``model`` (the page, gradio's API and huskyai.serve.rest's lean route, all through one prediction call)
    with the fairness middleware and the upload sweeper, until interrupted."""
    from gradio.utils import get_upload_folder

    audit = AuditLog()
    uploads = UploadRegistry(get_upload_folder(), ttl=settings.upload_ttl,
                             unread_ttl=min(60.0, settings.upload_ttl))
    predict = shared_predict(model, settings.engine_batch)
    demo = build_demo(model, settings, audit, uploads, predict)
    uploads.never_delete(_kept_files(demo))
    # X-Forwarded-For is interpreted by huskyai (HUSKYAI_TRUST_PROXY), never by uvicorn, whose default
    # trusts any header sent from 127.0.0.1 and would let a local caller pick its own address
    os.environ["FORWARDED_ALLOW_IPS"] = ""
    signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C: the server closes and uploads are swept
    try:
        with _uvicorn_protocol(_connection_guard(model, settings, audit).protocol()):
            demo.launch(
                server_name=settings.host,
                server_port=settings.port,
                max_file_size=settings.upload_limit,
                enable_monitoring=False,
                show_error=False,
                ssr_mode=False,
                run_history=False,  # it would keep people's photos in the browser and offer to re-send them
                # gradio keeps ~25 KB of per-session state, and every API call is a session of its own: bounded
                # here it levels off at ~25 MB instead of growing to ~250 MB (its default keeps 10,000)
                state_session_capacity=1000,
                css=CSS,
                app_kwargs={"middleware": [_fair_serving(model, settings, audit, uploads, demo)],
                            "routes": [predict_route(model, settings, audit, predict)],
                            "lifespan": _sweeping(uploads, settings.upload_ttl)},
            )
    finally:
        uploads.sweep(everything=True)


def _fair_serving(model: Predictor, settings: Settings, audit: AuditLog, uploads: UploadRegistry,
                  demo: gr.Blocks) -> Middleware:
    """huskyai.serve.limits.middleware.FairServing, configured from the settings, for gradio's FastAPI app."""

    def on_refusal(address: str, reason: str) -> None:
        record_refusal(audit, model, audit.client_id(address), reason)

    return Middleware(FairServing, upload_limit=settings.upload_limit, max_in_flight=settings.max_in_flight,
                      trusted_proxy_hops=settings.trusted_proxy_hops,
                      predictions=RateLimiter(settings.rate_limit), uploads_limiter=RateLimiter(settings.rate_limit),
                      uploads=uploads, queued_for=_queued_for(demo, settings.trusted_proxy_hops),
                      on_refusal=on_refusal, idle_timeout=settings.body_timeout)


def _connection_guard(model: Predictor, settings: Settings, audit: AuditLog) -> ConnectionGuard:
    """huskyai.serve.limits.connections' deadlines and per-client connection cap, configured from the settings.

    Behind trusted proxies (HUSKYAI_TRUST_PROXY > 0) every connection comes from a proxy, so a cap per TCP
    peer would be one cap on everybody: it is off there, and the proxy's own per-client cap (deploy/nginx.conf's
    limit_conn) takes its place. The deadlines hold either way."""

    def on_refusal(address: str, reason: str) -> None:
        record_refusal(audit, model, audit.client_id(address), reason)

    return ConnectionGuard(header_timeout=settings.header_timeout, body_timeout=settings.body_timeout,
                           max_per_client=0 if settings.trusted_proxy_hops > 0 else settings.max_connections,
                           on_refusal=on_refusal)


def _sweeping(uploads: UploadRegistry, ttl: float) -> Callable:
    """The server's lifespan: orphans of a killed run swept at start, expired uploads every few seconds,
    all of them at the end."""

    @contextlib.asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:
        async def every_few_seconds() -> None:
            while True:
                await asyncio.sleep(max(1.0, min(15.0, ttl / 3)))
                await anyio.to_thread.run_sync(uploads.sweep)

        await anyio.to_thread.run_sync(uploads.sweep_orphans)
        task = asyncio.create_task(every_few_seconds())
        try:
            yield
        finally:
            task.cancel()
            uploads.sweep(everything=True)

    return lifespan


def _kept_files(demo: gr.Blocks) -> Callable[[], set[str]]:
    """The files the app itself placed in gradio's cache (examples, the card's plot): never deleted."""
    def kept() -> set[str]:
        return {p for block in list(demo.blocks.values()) for p in list(getattr(block, "keep_in_cache", ()))}
    return kept


def _queued_for(demo: gr.Blocks, trusted_hops: int) -> Callable[[str], int]:
    """How many events an address has waiting or running in gradio's queue."""
    def count(client: str) -> int:
        events = list(getattr(demo._queue, "event_ids_to_events", {}).values())
        return sum(1 for e in events if request_client(e.request, trusted_hops) == client)
    return count


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


# --- gradio internals (checked against gradio 6.31.0 and uvicorn 0.55.0) ---
@contextlib.contextmanager
def _uvicorn_protocol(protocol: type[asyncio.Protocol]) -> Iterator[None]:
    """Serve every connection through ``protocol`` while gradio starts its server inside this block.

    ``Blocks.launch`` builds its ``uvicorn.Config`` itself (in ``gradio.http_server.start_server``) and hands
    it to ``gradio.http_server.Server``, with no way to pass ``http=``: a subclass of that Server, put in its
    place for the duration, sets the protocol on the config before uvicorn loads it. WebSockets are off
    (``ws="none"``): gradio 6 talks to the page over HTTP and server-sent events only, and an upgraded
    connection would leave the protocol, its deadlines and its count."""
    from gradio import http_server

    original = http_server.Server

    class Server(original):
        def __init__(self, config, *args, **kwargs) -> None:
            config.http = protocol
            config.ws = "none"
            super().__init__(config, *args, **kwargs)

    http_server.Server = Server
    try:
        yield
    finally:
        http_server.Server = original
