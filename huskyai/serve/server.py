"""Run the page: gradio's server with connection deadlines and the fairness middleware in front, the upload
sweeper, and a clean stop.

Start the app through :func:`huskyai.serve.app.serve` (``python app.py``, ``huskyai serve``), which loads
the model and calls :func:`launch`. The gradio and uvicorn internals it needs are huskyai.serve.gradio_adapter's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable

import anyio
import gradio as gr
from fastapi.middleware import Middleware

from huskyai.audit import AuditLog
from huskyai.inference.predictor import Predictor
from huskyai.serve import gradio_adapter
from huskyai.serve.context import ServeContext
from huskyai.serve.limits.connections import ConnectionGuard
from huskyai.serve.limits.middleware import FairServing
from huskyai.serve.limits.ratelimit import RateLimiter
from huskyai.serve.limits.uploads import UploadRegistry
from huskyai.serve.page import CSS, PAGE_JS, build_demo
from huskyai.serve.rest import predict_route
from huskyai.settings import Settings


def launch(model: Predictor, settings: Settings) -> None:
    """Serve ``model`` (the page, gradio's API and huskyai.serve.rest's lean route, all through one prediction call)
    with the fairness middleware and the upload sweeper, until interrupted."""
    uploads = UploadRegistry(gradio_adapter.upload_folder(), ttl=settings.upload_ttl,
                             unread_ttl=min(60.0, settings.upload_ttl))
    ctx = ServeContext(model, settings, AuditLog(), uploads)
    signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C: the server closes and uploads are swept
    try:
        serve_page(ctx)
    finally:
        uploads.sweep(everything=True)


def serve_page(ctx: ServeContext, block: bool = True) -> gr.Blocks:
    """Build the page and serve it on ``settings.host:port`` through gradio's own server, with the connection
    guard, the fairness middleware, the lean route and the upload sweeper. ``block=False`` returns the page once
    its server listens (in a thread of this process; ``demo.close()`` stops it), as the tests run it.
    ``ctx.uploads`` is the registry of the server's uploads (the only files it ever deletes)."""
    if ctx.uploads is None:
        raise ValueError("serving needs an upload registry (ServeContext.uploads)")
    settings = ctx.settings
    demo = build_demo(ctx)
    ctx.uploads.never_delete(lambda: gradio_adapter.kept_in_cache(demo))
    # X-Forwarded-For is interpreted by huskyai (HUSKYAI_TRUST_PROXY), never by uvicorn, whose default
    # trusts any header sent from 127.0.0.1 and would let a local caller pick its own address
    os.environ["FORWARDED_ALLOW_IPS"] = ""
    with gradio_adapter.uvicorn_protocol(connection_guard(ctx).protocol()):
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
            app_kwargs=app_kwargs(ctx, demo),
            prevent_thread_lock=not block,
            quiet=not block,
        )
    return demo


def app_kwargs(ctx: ServeContext, demo: gr.Blocks) -> dict:
    """What the app adds to gradio's FastAPI app: the fairness middleware, the lean route and the upload sweeper."""
    return {"middleware": [fair_serving(ctx, demo)], "routes": [predict_route(ctx)],
            "lifespan": _sweeping(ctx.uploads, ctx.settings.upload_ttl)}


def fair_serving(ctx: ServeContext, demo: gr.Blocks | None) -> Middleware:
    """huskyai.serve.limits.middleware.FairServing, configured from the settings, for gradio's FastAPI app.
    ``demo``: the page whose queue is counted per client (None: nothing is queued, as around a bare route)."""
    settings = ctx.settings

    def on_refusal(address: str, reason: str) -> None:
        ctx.refused(ctx.audit.client_id(address), reason)

    return Middleware(FairServing, upload_limit=settings.upload_limit, max_in_flight=settings.max_in_flight,
                      trusted_proxy_hops=settings.trusted_proxy_hops,
                      predictions=RateLimiter(settings.rate_limit), uploads_limiter=RateLimiter(settings.rate_limit),
                      uploads=ctx.uploads, queued_for=queued_for(ctx, demo),
                      on_refusal=on_refusal, idle_timeout=settings.body_timeout)


def connection_guard(ctx: ServeContext) -> ConnectionGuard:
    """huskyai.serve.limits.connections' deadlines and per-client connection cap, configured from the settings.

    Behind trusted proxies (HUSKYAI_TRUST_PROXY > 0) every connection comes from a proxy, so a cap per TCP
    peer would be one cap on everybody: it is off there, and the proxy's own per-client cap (deploy/nginx.conf's
    limit_conn) takes its place. The deadlines hold either way."""
    settings = ctx.settings

    def on_refusal(address: str, reason: str) -> None:
        ctx.refused(ctx.audit.client_id(address), reason)

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
