"""Health checks: /livez answers while the process runs, /readyz says whether the app can answer predictions.

/readyz is 200 only once the model was loaded and verified (its card trusted, every file hashed) and the page's
server answers; until then it is 503 with the reason, such as "loading and verifying the model". The same two
routes are served by the start-up listener (huskyai.serve.startup) while the model loads, and by the app once it
serves, from one :class:`Readiness`, so a watcher sees one story from the first second: 503 with each reason in
turn, then 200. Neither route costs a client's budget (they are GETs the middleware does not charge) or says
anything about clients.
"""

from __future__ import annotations

import threading

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

LIVEZ, READYZ = "/livez", "/readyz"
LOADING = "loading and verifying the model"
STARTING = "the model is verified; starting the page's server"
STOPPING = "stopping"


class Readiness:
    """Whether the app is ready, and if not, why (one short sentence, never a client's text). Thread-safe: the
    loader's thread, the server's thread and the routes read and write it."""

    def __init__(self, reason: str = LOADING):
        self._lock = threading.Lock()
        self._reason: str | None = reason

    @property
    def ready(self) -> bool:
        return self._reason is None

    @property
    def reason(self) -> str | None:
        return self._reason

    def not_ready(self, reason: str) -> None:
        with self._lock:
            self._reason = reason

    def moved_on(self, old: str, new: str) -> None:
        """The reason becomes ``new`` if it is still ``old`` (a step of the start-up that may finish late, after a
        later step already moved the reason on, never moves it back)."""
        with self._lock:
            if self._reason == old:
                self._reason = new

    def mark_ready(self) -> None:
        with self._lock:
            self._reason = None


def livez(request: Request) -> Response:
    return JSONResponse({"alive": True})


def readyz_endpoint(readiness: Readiness):
    def readyz(request: Request) -> Response:
        reason = readiness.reason
        if reason is None:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "reason": reason}, status_code=503, headers={"retry-after": "1"})
    return readyz


def health_routes(readiness: Readiness) -> list[Route]:
    """GET /livez and /readyz (HEAD too, as load balancers probe)."""
    return [Route(LIVEZ, livez, methods=["GET", "HEAD"]),
            Route(READYZ, readyz_endpoint(readiness), methods=["GET", "HEAD"])]
