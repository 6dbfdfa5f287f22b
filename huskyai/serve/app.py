"""Starting the app: bind the port (answering /livez and /readyz at once), load the model (in a thread, while
gradio is imported) and serve it until stopped.

Shared by ``python app.py`` and ``python -m huskyai serve``.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from huskyai.api import Model, load
from huskyai.errors import HuskyAIError, SettingsError
from huskyai.serve.health import LOADING, STARTING, Readiness
from huskyai.serve.startup import StartingServer, bind
from huskyai.settings import Settings


def load_in_background(export_dir: str | Path | None = None, sha256: str | None = None,
                       trust_unsigned: bool = False, precision: str | None = None,
                       threads: int | None = None, public_key: str | Path | None = None) -> Future:
    """Start loading (and warming up) a model in a thread; ``.result()`` gives the Model.

    The app uses it to verify hashes and open ONNX Runtime while ``import gradio`` runs: hashing,
    file reads and the engine's start release the GIL."""
    def load_and_warm() -> Model:
        model = load(export_dir, sha256=sha256, trust_unsigned=trust_unsigned, threads=threads, precision=precision,
                     public_key=public_key)
        model.predict(np.zeros((model.size, model.size, 3), np.uint8))  # the engine's first run is the slow one
        return model

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="huskyai-load")
    future = pool.submit(load_and_warm)
    pool.shutdown(wait=False)
    return future


def serve(model_dir: str | None = None, host: str | None = None, port: int | None = None,
          sha256: str | None = None, trust_unsigned: bool = False, public_key: str | Path | None = None) -> int:
    """Bind the port, load the model (in a thread, while gradio is imported) and serve the app until stopped.

    The start-up order, as /readyz tells it: the port is bound first and answers at once (huskyai.serve.startup:
    /livez 200, /readyz 503 "loading and verifying the model"); the model is loaded and verified while gradio is
    imported (/readyz: "the model is verified; starting the page's server"); the page is built and its server
    takes the same socket over (/readyz 200). A model that fails its checks ends the process with code 1.

    Shared by ``python app.py`` and ``python -m huskyai serve``; ``sha256``, ``trust_unsigned`` and ``public_key``
    (else $HUSKYAI_MODEL_PUBLIC_KEY) are passed to :func:`huskyai.load`. Returns an exit code; a missing or
    tampered model, a port in use, or a bad setting, is one line on stderr, not a traceback."""
    # gradio wraps every call in a matplotlib backend switch; naming the backend up front saves the
    # first request 0.3 s of backend resolution (a server has no display)
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        settings = Settings.from_env(model_dir, host, port)
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        listener = bind(settings.host, settings.port)
    except (OSError, OverflowError) as err:  # the port is taken, or not a port
        print(f"error: cannot listen on {settings.host}:{settings.port}: {err}", file=sys.stderr)
        return 1
    readiness = Readiness(LOADING)
    starting = StartingServer(listener, readiness).start()
    # hashing and ONNX Runtime's start overlap gradio's import (seconds), which is why it is imported only here
    model = load_in_background(settings.model_dir, sha256=sha256,
                               trust_unsigned=trust_unsigned or settings.trust_unsigned,
                               public_key=public_key or settings.public_key,
                               threads=settings.engine_threads or None)
    model.add_done_callback(lambda done: None if done.exception() else readiness.moved_on(LOADING, STARTING))
    from huskyai.serve.server import launch

    try:
        predictor = model.result()
    except HuskyAIError as err:
        readiness.not_ready("the model was refused")
        starting.stop()
        listener.close()
        print(f"error: cannot serve the model: {err}", file=sys.stderr)
        return 1
    launch(predictor, settings, listener=listener, readiness=readiness, before_start=starting.stop)
    return 0
