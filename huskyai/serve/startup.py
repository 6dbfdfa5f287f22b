"""Start-up: the app's port is bound at once, and answers /livez and /readyz while the model loads.

Loading the model (hashing every file, checking the card's trust, starting ONNX Runtime) and building the page
take seconds. So that a service manager, a load balancer or a person can watch them, :func:`bind` takes the
port first (a port already in use is reported before anything is loaded), and :class:`StartingServer` serves a
tiny app on it: /livez 200, /readyz 503 with the reason, and 503 "starting" (Retry-After) for anything else.
Once the page is built, the starting server stops taking connections and the page's server takes over the
same listening socket (huskyai.serve.gradio_adapter.serve_on): the socket stays open throughout, so a
connection made during the handover waits in the kernel's queue and is answered by the page, never refused.

The noise-trained model that gives certified answers (HUSKYAI_ROBUST_MODEL: the shipped export-robust/ by default)
is optional: :func:`robust_in_background` loads, verifies and warms it in a thread of its own, only when it is
there, and never holds readiness back. Until it is loaded, or when it is refused, certified answers say so and
every other answer is served as before.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from huskyai.api import Model
from huskyai.errors import HuskyAIError
from huskyai.inference import certify
from huskyai.serve.health import Readiness, health_routes
from huskyai.settings import ROBUST_DEFAULT, ROBUST_MODEL_SHA256_ENV, Settings
from huskyai.trust import exports

BACKLOG = 2048  # connections the kernel holds while nobody accepts (uvicorn's default)


def bind(host: str, port: int) -> socket.socket:
    """The app's listening socket on ``host:port`` (IPv4 or IPv6); OSError when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def starting_app(readiness: Readiness) -> Starlette:
    """/livez, /readyz, and 503 "starting" for every other path."""

    async def starting(request: Request) -> Response:
        message = f"Husky AI is starting ({readiness.reason or 'almost there'}); try again in a moment."
        return JSONResponse({"detail": message, "error": message}, status_code=503, headers={"retry-after": "2"})

    app = Starlette(routes=health_routes(readiness))
    app.add_route("/{path:path}", starting, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
    return app


class StartingServer:
    """:func:`starting_app` served on a duplicate of ``listener`` in a thread, until :meth:`stop` (the listener
    itself stays open for the page's server).

    It runs uvicorn's plain h11 protocol: the app's connection guard lives beside gradio's internals, and
    importing gradio takes the seconds this server exists to cover. Its connections last seconds at most: the
    server closes them all when it stops, one second after the page's server is ready to take over."""

    def __init__(self, listener: socket.socket, readiness: Readiness):
        import uvicorn

        config = uvicorn.Config(starting_app(readiness), http="h11", ws="none", lifespan="off",
                                log_level="warning", timeout_graceful_shutdown=1, timeout_keep_alive=2)
        self._server = uvicorn.Server(config)
        self._socket = listener.dup()
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="huskyai-starting", daemon=True)

    def start(self, timeout: float = 10.0) -> StartingServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking connections, answer those taken, and return (the duplicate socket is closed)."""
        self._server.should_exit = True
        self._thread.join(timeout)


WARM_UP_SAMPLES = 8  # noisy copies timed once loaded: what the page's "~N s" is estimated from


class BackgroundModel:
    """A model being loaded (and warmed up) in a thread: :meth:`get` gives it once loaded, None before that or
    when it was refused (``problem`` says why). ``seconds_per_sample`` is one noisy copy's time, measured once."""

    def __init__(self, future: Future | None = None, model: Model | None = None,
                 seconds_per_sample: float | None = None):
        self._future = future
        self._model = model
        self.seconds_per_sample = seconds_per_sample

    @classmethod
    def ready(cls, model: Model, seconds_per_sample: float | None = None) -> BackgroundModel:
        """A model that is already loaded."""
        return cls(model=model, seconds_per_sample=seconds_per_sample)

    def get(self, timeout: float | None = 0) -> Model | None:
        """The model, waiting at most ``timeout`` seconds for it (None: until it is loaded or refused)."""
        if self._model is None and self._future is not None:
            try:
                self._model, self.seconds_per_sample = self._future.result(timeout=timeout)
            except TimeoutError:
                return None
            except Exception:  # refused (HuskyAIError) or failed: ``problem`` says why; serving goes on without it
                return None
        return self._model

    @property
    def loading(self) -> bool:
        return self._model is None and self._future is not None and not self._future.done()

    @property
    def problem(self) -> str | None:
        """Why the model was refused, in one line, else None."""
        if self._future is None or not self._future.done() or self._future.exception() is None:
            return None
        return str(self._future.exception())


def robust_in_background(settings: Settings, main: Model | None = None) -> BackgroundModel | None:
    """The model that certifies answers: ``main`` itself when it was trained under noise, else
    ``settings.robust_model`` loaded in a thread ("robust": the shipped export-robust/, only when it is there;
    a folder or hf:// model: always tried, its refusal printed as a warning). None when there is none to load.
    It is trusted as any model is (HUSKYAI_ROBUST_MODEL_SHA256 pins it; $HUSKYAI_MODEL_PUBLIC_KEY applies)."""
    source = settings.robust_model
    if source is None:
        return None
    if main is not None and main.noise_sigma is not None:
        return BackgroundModel.ready(main)
    if source == ROBUST_DEFAULT and not (exports.resolve(source) / exports.CARD_NAME).is_file():
        return None

    def load_and_warm() -> tuple[Model, float]:
        try:
            model = Model(exports.open_export(source, pin_env=ROBUST_MODEL_SHA256_ENV),
                          threads=settings.engine_threads or None)
            return model, warm_up(model)
        except Exception as err:  # the app serves on without certified answers: say why, once
            shown = str(err) if isinstance(err, HuskyAIError) else f"{type(err).__name__}: {err}"
            print(f"warning: no certified answers: {shown}", file=sys.stderr)
            raise

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="huskyai-robust")
    future = pool.submit(load_and_warm)
    pool.shutdown(wait=False)
    return BackgroundModel(future)


def warm_up(model: Model) -> float:
    """Run the engine once, then time WARM_UP_SAMPLES noisy copies: seconds per copy. NotCertifiableError for a
    model not trained under noise."""
    sigma = certify.card_sigma(model.card)
    pixels = np.zeros((3, model.size, model.size), np.float32)
    decide = certify.base_classifier(model)
    certify.noisy_votes(decide, pixels, sigma, 1, len(model.classes), np.random.default_rng(0))
    start = time.perf_counter()
    certify.noisy_votes(decide, pixels, sigma, WARM_UP_SAMPLES, len(model.classes), np.random.default_rng(0))
    return (time.perf_counter() - start) / WARM_UP_SAMPLES
