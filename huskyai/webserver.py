"""Run the page: gradio's server with the fairness middleware in front, the upload sweeper, and a clean stop.

Start the app through :func:`huskyai.serving.serve` (``python app.py``, ``python -m huskyai serve``),
which loads the model and calls :func:`launch`.
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

from .audit import AuditLog
from .batching import shared_predict
from .handlers import record_refusal, request_client
from .middleware import FairServing
from .predictor import Predictor
from .ratelimit import RateLimiter
from .rest import predict_route
from .serving import Settings
from .ui import CSS, build_demo
from .uploads import UploadRegistry


def launch(model: Predictor, settings: Settings) -> None:
    """Serve ``model`` (the page, gradio's API and huskyai.rest's lean route, all through one prediction call)
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
    """huskyai.middleware.FairServing, configured from the settings, for gradio's FastAPI app."""

    def on_refusal(address: str, reason: str) -> None:
        record_refusal(audit, model, audit.client_id(address), reason)

    return Middleware(FairServing, upload_limit=settings.upload_limit, max_in_flight=settings.max_in_flight,
                      trusted_proxy_hops=settings.trusted_proxy_hops,
                      predictions=RateLimiter(settings.rate_limit), uploads_limiter=RateLimiter(settings.rate_limit),
                      uploads=uploads, queued_for=_queued_for(demo, settings.trusted_proxy_hops),
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
