"""Shared helpers of the serving tests: the app served in-process, and the audit log read back.

:func:`served` runs the app as ``huskyai.serve.server.launch`` builds it (the same page, middleware, lean
route, connection guard and upload sweeper) with uvicorn in a thread of the test process, on a free loopback
port: no new process, no second model load, a second or so to start. Tests speak to it over real HTTP from any
127.x.y.z address (huskyai.redteam.client), so per-client limits are tested as a client meets them.
Only what needs a process of its own (the entry point's exit codes, which modules the process imported, the
browser tests' serving install) still starts ``python app.py`` (conftest.running_app).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import free_port


def audit_lines(path: Path) -> list[dict]:
    """Every line of an audit log, parsed (none when it does not exist yet)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_until(condition, timeout: float = 20.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


@dataclass
class Served:
    url: str
    port: int
    ctx: object  # huskyai.serve.context.ServeContext
    demo: object
    audit_log: Path
    cache: Path

    def audit(self) -> list[dict]:
        return audit_lines(self.audit_log)

    def __getitem__(self, key: str):  # the keys of conftest.running_app's dict, for tests that take either
        return getattr(self, key)

    def sweep_after(self, seconds: float) -> int:
        """One sweep of the upload registry as it would run ``seconds`` from now (an injected clock)."""
        return self.ctx.uploads.sweep(now=time.monotonic() + seconds)


@contextlib.contextmanager
def served(model, workdir: Path, **settings) -> Iterator[Served]:
    """The app around ``model`` with ``Settings(**settings)``, served on a free loopback port by
    huskyai.serve.server.serve_page (gradio's own server, in a thread of this process), with its own audit log
    under ``workdir`` and the run's upload cache (:func:`upload_cache`)."""
    from huskyai.audit import AuditLog
    from huskyai.serve.context import ServeContext
    from huskyai.serve.limits.uploads import UploadRegistry
    from huskyai.serve.server import replica_name, serve_page
    from huskyai.settings import Settings

    cache = upload_cache()
    log = workdir / "audit.jsonl"
    port = free_port()
    settings = Settings(**{"host": "127.0.0.1", "port": port} | settings)
    uploads = UploadRegistry(cache, ttl=settings.upload_ttl, unread_ttl=min(60.0, settings.upload_ttl))
    ctx = ServeContext(model, settings, AuditLog(log, replica=replica_name(settings)), uploads)
    demo = serve_page(ctx, block=False)
    try:
        yield Served(f"http://127.0.0.1:{port}/", port, ctx, demo, log, cache)
    finally:
        demo.close()
        ctx.audit.flush()


def upload_cache() -> Path:
    """gradio's upload cache for every app this test process serves: gradio reads GRADIO_TEMP_DIR whenever it
    checks that a file is one of its uploads, so it is one folder, this run's, for the whole process (an app
    deletes only the uploads it recorded itself)."""
    import os

    from conftest import RUN_DIR

    folder = RUN_DIR / "gradio_cache"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def lean_app(ctx):
    """The lean route and its description behind the fairness middleware, as the app mounts them, served
    in-process (:func:`ask`)."""
    from starlette.applications import Starlette

    from huskyai.serve.openapi import openapi_route
    from huskyai.serve.rest import predict_route
    from huskyai.serve.server import fair_serving

    return Starlette(routes=[predict_route(ctx), openapi_route(ctx.settings, ctx.model.classes, ctx.model.positive)],
                     middleware=[fair_serving(ctx, None)])


def ask(app, requests: list[dict]) -> list:
    """Each request (httpx.AsyncClient.request's arguments) to the ASGI ``app`` in turn, in this process
    (httpx.ASGITransport): the httpx.Response of each."""
    import httpx

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            return [await c.request(**r) for r in requests]
    return asyncio.run(run())
