"""Run the page: gradio's server with connection deadlines and the fairness middleware in front, the lean route,
the service routes (/metrics, /livez, /readyz, the API's OpenAPI description), the upload sweeper, and a clean
stop.

Start the app through :func:`huskyai.serve.app.serve` (``python app.py``, ``huskyai serve``), which binds the
port, loads the model and calls :func:`launch`. The gradio and uvicorn internals it needs are
huskyai.serve.gradio_adapter's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable

import anyio
import gradio as gr
from fastapi.middleware import Middleware

from huskyai.audit import AuditLog
from huskyai.inference.predictor import Predictor
from huskyai.serve import gradio_adapter
from huskyai.serve.context import ServeContext
from huskyai.serve.health import STARTING, Readiness, health_routes
from huskyai.serve.limits.connections import ConnectionGuard
from huskyai.serve.limits.middleware import FairServing
from huskyai.serve.limits.ratelimit import InFlight, RateLimiter
from huskyai.serve.limits.uploads import UploadRegistry
from huskyai.serve.metrics import metrics_route
from huskyai.serve.openapi import openapi_route
from huskyai.serve.page import CSS, PAGE_JS, build_demo
from huskyai.serve.refusals import Refusal
from huskyai.serve.rest import predict_route
from huskyai.serve.startup import bind
from huskyai.settings import Settings


def launch(model: Predictor, settings: Settings, listener: socket.socket | None = None,
           readiness: Readiness | None = None, before_start: Callable[[], None] | None = None) -> None:
    """Serve ``model`` (the page, gradio's API and huskyai.serve.rest's lean route, all through one prediction call)
    with the fairness middleware and the upload sweeper, until interrupted. ``listener``, ``readiness`` and
    ``before_start`` are the start-up's (huskyai.serve.app.serve): its bound socket, what /readyz says, and the
    call that stops its starting server just before the page's takes the socket over."""
    uploads = UploadRegistry(gradio_adapter.upload_folder(), ttl=settings.upload_ttl,
                             unread_ttl=min(60.0, settings.upload_ttl))
    ctx = ServeContext(model, settings, AuditLog(replica=replica_name(settings)), uploads,
                       readiness=readiness or Readiness(STARTING))
    signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C: the server closes and uploads are swept
    try:
        serve_page(ctx, listener=listener, before_start=before_start)
    finally:
        uploads.sweep(everything=True)


def replica_name(settings: Settings) -> str:
    """How this replica names itself in the audit log: HUSKYAI_REPLICA, else HOSTNAME:PORT."""
    return settings.replica or f"{socket.gethostname()}:{settings.port}"


def serve_page(ctx: ServeContext, block: bool = True, listener: socket.socket | None = None,
               before_start: Callable[[], None] | None = None) -> gr.Blocks:
    """Build the page and serve it on ``listener`` (else a socket bound here to ``settings.host:port``) through
    gradio's own server, with the connection guard, the fairness middleware, the lean route, the service routes
    and the upload sweeper. ``ctx.readiness`` turns ready once the server accepts. ``block=False`` returns the
    page once its server listens (in a thread of this process; ``demo.close()`` stops it), as the tests run it.
    ``ctx.uploads`` is the registry of the server's uploads (the only files it ever deletes)."""
    if ctx.uploads is None:
        raise ValueError("serving needs an upload registry (ServeContext.uploads)")
    settings = ctx.settings
    listener = listener if listener is not None else bind(settings.host, settings.port)
    demo = build_demo(ctx)
    ctx.uploads.never_delete(lambda: gradio_adapter.kept_in_cache(demo))
    in_flight = InFlight(ctx.store)
    ctx.metrics.watch(queue_depth=lambda: len(gradio_adapter.queued_requests(demo)), in_flight=lambda: in_flight.total)
    # X-Forwarded-For is interpreted by huskyai (HUSKYAI_TRUST_PROXY), never by uvicorn, whose default
    # trusts any header sent from 127.0.0.1 and would let a local caller pick its own address
    os.environ["FORWARDED_ALLOW_IPS"] = ""
    with gradio_adapter.serve_on(listener, connection_guard(ctx).protocol(), before_start=before_start or _nothing,
                                 on_started=ctx.readiness.mark_ready):
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
            js=PAGE_JS,
            app_kwargs=app_kwargs(ctx, demo, in_flight),
            prevent_thread_lock=not block,
            quiet=not block,
        )
    return demo


def app_kwargs(ctx: ServeContext, demo: gr.Blocks, in_flight: InFlight | None = None) -> dict:
    """What the app adds to gradio's FastAPI app: the fairness middleware, the lean route, the service routes
    (/metrics unless HUSKYAI_METRICS=off, /livez, /readyz, the lean route's OpenAPI description) and the upload
    sweeper."""
    routes = [predict_route(ctx), openapi_route(ctx.settings, ctx.model.classes, ctx.model.positive),
              *health_routes(ctx.readiness)]
    if ctx.settings.metrics != "off":
        routes.append(metrics_route(ctx.metrics, ctx.settings.metrics))
    return {"middleware": [fair_serving(ctx, demo, in_flight)], "routes": routes,
            "lifespan": _sweeping(ctx.uploads, ctx.settings.upload_ttl)}


def fair_serving(ctx: ServeContext, demo: gr.Blocks | None, in_flight: InFlight | None = None) -> Middleware:
    """huskyai.serve.limits.middleware.FairServing, configured from the settings, for gradio's FastAPI app, its
    budgets in the app's limits store. ``demo``: the page whose queue is counted per client (None: nothing is
    queued, as around a bare route)."""
    settings = ctx.settings

    def on_refusal(address: str, kind: Refusal, reason: str) -> None:
        ctx.refused(ctx.audit.client_id(address), kind, reason)

    return Middleware(FairServing, upload_limit=settings.upload_limit, max_in_flight=settings.max_in_flight,
                      trusted_proxy_hops=settings.trusted_proxy_hops,
                      predictions=RateLimiter(settings.rate_limit, ctx.store, name="predictions"),
                      uploads_limiter=RateLimiter(settings.rate_limit, ctx.store, name="uploads"),
                      in_flight=in_flight or InFlight(ctx.store), uploads=ctx.uploads,
                      queued_for=queued_for(ctx, demo), on_refusal=on_refusal, idle_timeout=settings.body_timeout)


def connection_guard(ctx: ServeContext) -> ConnectionGuard:
    """huskyai.serve.limits.connections' deadlines and per-client connection cap, configured from the settings.

    Behind trusted proxies (HUSKYAI_TRUST_PROXY > 0) every connection comes from a proxy, so a cap per TCP
    peer would be one cap on everybody: it is off there, and the proxy's own per-client cap (deploy/nginx.conf's
    limit_conn) takes its place. The deadlines hold either way."""
    settings = ctx.settings

    def on_refusal(address: str, kind: Refusal, reason: str) -> None:
        ctx.refused(ctx.audit.client_id(address), kind, reason)

    return ConnectionGuard(header_timeout=settings.header_timeout, body_timeout=settings.body_timeout,
                           max_per_client=0 if settings.trusted_proxy_hops > 0 else settings.max_connections,
                           on_refusal=on_refusal)


def queued_for(ctx: ServeContext, demo: gr.Blocks | None) -> Callable[[str], int]:
    """How many events an address has waiting or running in gradio's queue."""
    def count(address: str) -> int:
        if demo is None:
            return 0
        return sum(1 for request in gradio_adapter.queued_requests(demo) if ctx.request_address(request) == address)
    return count


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


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _nothing() -> None:
    pass
