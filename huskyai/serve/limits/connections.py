"""Deadlines and a per-client cap on the app's own HTTP connections: uvicorn's h11 protocol with timers.

uvicorn waits as long as a client likes for a request's headers, and keeps draining a body that trickles
in after the app has answered, so a few hundred connections that each send a byte now and then hold the
server's sockets forever (slowloris). :class:`ConnectionGuard` makes the protocol class uvicorn builds
for every connection, with three rules:

- **Headers:** a request's headers must be complete within ``header_timeout`` seconds of the connection
  opening or of the previous answer being sent. However slowly they trickle, a connection that is still
  sending headers then is answered 408 and closed (one that sent nothing is closed silently, as an idle
  keep-alive connection is).
- **Body:** while a request's body is arriving, on every route (whether or not the app reads it), the
  client may be silent for at most ``body_timeout`` seconds, and beyond the first ``body_timeout`` seconds
  it must average ``min_body_rate`` bytes a second. A body that stalls or trickles is answered 408 (if no
  answer has started) and the connection closed. Time the server itself holds the body back (the app has
  not read what arrived, or a client that sent ``Expect: 100-continue`` was not yet asked to go on) is
  never charged to the client.
- **Connections per client:** at most ``max_per_client`` connections open at once from one address (as
  :func:`huskyai.settings.client_address` buckets it: an IPv6 /64 is one address), counted as each opens,
  before anything is read. One more is answered 429 and closed at once. ``max_per_client=0`` turns the
  cap off (behind a reverse proxy every connection comes from the proxy, whose own per-client cap rules).

The base is uvicorn's pure-Python ``H11Protocol`` rather than whatever ``http="auto"`` would pick, so the
rules run the same on every install; which phase a connection is in is read from h11's public states.
The subclass also reads uvicorn's own per-connection attributes (``cycle``, ``flow``, ``conn``): its base and
those attributes are named in huskyai.serve.gradio_adapter with the uvicorn version they were checked against.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import h11

from huskyai.serve.gradio_adapter import UvicornH11Protocol
from huskyai.serve.limits.clients import client_address
from huskyai.serve.refusals import Refusal

MIN_BODY_RATE = 1024  # bytes a second a body must average once its first body_timeout seconds are over
HEADERS, BODY = "headers", "body"


class ConnectionGuard:
    """The rules above for one server: its settings, and how many connections each client has open.

    ``on_refusal(address, kind, reason)`` is told of every connection refused or cut (not of idle keep-alive
    connections closed). All calls happen on the server's event loop, so the counts need no lock."""

    def __init__(self, *, header_timeout: float, body_timeout: float, max_per_client: int,
                 min_body_rate: float = MIN_BODY_RATE, on_refusal: Callable[[str, Refusal, str], None] | None = None):
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_per_client = max_per_client
        self.min_body_rate = min_body_rate
        self.on_refusal = on_refusal or (lambda address, kind, reason: None)
        self.open: dict[str, int] = {}

    def admit(self, address: str) -> bool:
        """Count one more connection from ``address``; False (and nothing counted) when it has its share."""
        count = self.open.get(address, 0)
        if self.max_per_client and count >= self.max_per_client:
            return False
        self.open[address] = count + 1
        return True

    def release(self, address: str) -> None:
        left = self.open.get(address, 0) - 1
        if left > 0:
            self.open[address] = left
        else:
            self.open.pop(address, None)

    def protocol(self) -> type[asyncio.Protocol]:
        """The protocol class to give uvicorn (``uvicorn.Config(http=...)``), bound to this guard."""
        return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": self})


class GuardedH11Protocol(UvicornH11Protocol):
    """uvicorn's h11 protocol with the guard's deadlines and per-client count (use ConnectionGuard.protocol)."""

    guard: ConnectionGuard

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._address: str | None = None  # set while this connection holds one of its client's places
        self._timer: asyncio.TimerHandle | None = None
        self._phase: str | None = None
        self._cycle = None  # the request whose headers were last seen complete
        self._body_started = 0.0
        self._body_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = client_address(self.client[0] if self.client else None, (), 0)
        if not self.guard.admit(address):
            self.guard.on_refusal(address, Refusal.CONNECTION_CAP,
                                  f"connection cap: already {self.guard.max_per_client} connections open")
            self._answer_and_close(429, f"Too many connections from one address: at most "
                                        f"{self.guard.max_per_client} at a time.")
            return
        self._address = address
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        if self._address is not None:
            self.guard.release(self._address)
            self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._phase == BODY:
            self._body_bytes += len(data)
        self._follow(arrived=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def _follow(self, arrived: bool = False) -> None:
        """Arm the timer that fits the phase the connection is in now (h11's state of the client's side)."""
        if self._address is None or self.transport.is_closing():
            return self._stop()
        if self.cycle is not self._cycle:  # a request's headers were completed since the last look
            self._cycle = self.cycle
            self._stop()
        state = self.conn.their_state
        if state is h11.IDLE:  # waiting for a request's headers: one deadline for all of them
            if self._phase != HEADERS:
                self._arm(HEADERS, self.guard.header_timeout)
        elif state is h11.SEND_BODY:
            if self._phase != BODY:
                self._body_started, self._body_bytes = self.loop.time(), 0
                self._arm(BODY, self._body_deadline())
            elif arrived:
                self._arm(BODY, self._body_deadline())
        else:  # the request is complete, or the connection is closing: no deadline on the client
            self._stop()

    def _body_deadline(self) -> float:
        now = self.loop.time()
        earned = self._body_started + self.guard.body_timeout + self._body_bytes / self.guard.min_body_rate
        return max(0.0, min(self.guard.body_timeout, earned - now))

    def _arm(self, phase: str, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._phase = phase
        self._timer = self.loop.call_later(delay, self._expired, phase)

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._phase = None

    def _expired(self, phase: str) -> None:
        self._timer = None
        if self.transport.is_closing() or self._address is None:
            return
        if phase == HEADERS:
            started, _ = self.conn.trailing_data
            if not started:  # nothing of a next request arrived: an idle keep-alive connection
                self.transport.close()
                return
            self.guard.on_refusal(self._address, Refusal.HEADERS_TOO_SLOW,
                                  f"request headers not complete within {self.guard.header_timeout:g} s")
            self._answer_and_close(408, "The request headers took too long; send the request again.")
            return
        if self.flow.read_paused or self.conn.they_are_waiting_for_100_continue:
            # the app has not read what arrived, or not yet asked for the body: the client is not the one waiting
            self._body_started, self._body_bytes = self.loop.time(), 0
            self._arm(BODY, self.guard.body_timeout)
            return
        self.guard.on_refusal(self._address, Refusal.BODY_STALLED,
                              "request body stalled or too slow (connection closed)")
        if self.cycle is not None and not self.cycle.response_started:
            self._answer_and_close(408, "The request body stalled; send the request again.")
        else:
            self.transport.close()

    def _answer_and_close(self, status: int, message: str) -> None:
        """One short plain-text answer written straight to the socket (h11's state does not matter any more),
        then the connection is closed; anything the app sends later is dropped."""
        phrase = {408: b"Request Timeout", 429: b"Too Many Requests"}[status]
        body = message.encode() + b"\n"
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n%s" % (status, phrase, len(body), body))
        self.transport.close()
