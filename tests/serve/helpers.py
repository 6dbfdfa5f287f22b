"""Shared helpers of the serving tests: the app served in-process, and the audit log read back.

:func:`served` runs the app as ``huskyai.serve.server.launch`` builds it (the same page, middleware, lean
route, connection guard and upload sweeper) with uvicorn in a thread of the test process, on a free loopback
port: no new process, no second model load, a second or so to start. Tests speak to it over real HTTP from any
127.x.y.z address (huskyai.redteam.client), so per-client limits are tested as a client meets them.
Only what needs a process of its own (the entry point's exit codes, which modules the process imported, the
browser tests' serving install) still starts ``python app.py`` (conftest.running_app).
"""

from __future__ import annotations

import contextlib
import json
import threading
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
def served(model, workdir: Path, monkeypatch=None, **settings) -> Iterator[Served]:
    """The app around ``model`` with ``Settings(**settings)``, served by uvicorn in a thread on a free loopback
    port, with its own upload cache and audit log under ``workdir``."""
    import uvicorn

    from huskyai.audit import AuditLog
    from huskyai.serve import gradio_adapter
    from huskyai.serve.context import ServeContext
    from huskyai.serve.limits.uploads import UploadRegistry
    from huskyai.serve.page import build_demo
    from huskyai.serve.server import app_kwargs, connection_guard
    from huskyai.settings import Settings

    cache = workdir / "gradio_cache"
    cache.mkdir(parents=True, exist_ok=True)
    log = workdir / "audit.jsonl"
    settings = Settings(**settings)
    uploads = UploadRegistry(cache, ttl=settings.upload_ttl, unread_ttl=min(60.0, settings.upload_ttl))
    ctx = ServeContext(model, settings, AuditLog(log), uploads)
    with _upload_folder(cache):
        demo = build_demo(ctx)
        uploads.never_delete(lambda: gradio_adapter.kept_in_cache(demo))
        app = gradio_adapter.asgi_app(demo, max_file_size=settings.upload_limit, app_kwargs=app_kwargs(ctx, demo))
        app.uploaded_file_dir = str(cache)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=connection_guard(ctx).protocol(),
                                          ws="none", proxy_headers=False, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    if not wait_until(lambda: server.started, timeout=30):
        raise RuntimeError("the in-process app did not start")
    try:
        yield Served(f"http://127.0.0.1:{port}/", port, ctx, demo, log, cache)
    finally:
        server.should_exit = True
        thread.join(15)
        ctx.audit.flush()


@contextlib.contextmanager
def _upload_folder(folder: Path) -> Iterator[None]:
    """gradio reads GRADIO_TEMP_DIR when the app and the page's cached files are made: this app's own folder."""
    import os

    old = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = old
