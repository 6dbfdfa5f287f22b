"""Start-up: the app's port is bound at once, and answers /livez and /readyz while the model loads.

Loading the model (hashing every file, checking the card's trust, starting ONNX Runtime) and building the page
take seconds. So that a service manager, a load balancer or a person can watch them, :func:`bind` takes the
port first (a port already in use is reported before anything is loaded), and :class:`StartingServer` serves a
tiny app on it: /livez 200, /readyz 503 with the reason, and 503 "starting" (Retry-After) for anything else.
Once the page is built, the starting server stops taking connections and the page's server takes over the
same listening socket (huskyai.serve.gradio_adapter.serve_on): the socket stays open throughout, so a
connection made during the handover waits in the kernel's queue and is answered by the page, never refused.
"""

from __future__ import annotations

import socket
import threading
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from huskyai.serve.health import Readiness, health_routes

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
