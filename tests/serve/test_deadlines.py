"""Slow connections are cut, one address holds only its share of connections, an IPv6 /64 is one client.

The attacks: a slowloris client that sends one header line at a time, a body trickled byte by byte to a
route the fairness middleware treats as free, and one address opening connection after connection. The
app's tests serve it in-process with small deadlines (tests/serve/helpers.served: uvicorn in a thread with the
app's own protocol); the protocol tests run uvicorn with huskyai.serve.limits.connections' protocol around a
tiny app, for what the app itself never does (read a body late).
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from contextlib import contextmanager

import pytest
from serve.helpers import served

from conftest import free_port, jpeg_bytes, skimage_photo
from huskyai.serve.limits.clients import client_address
from huskyai.serve.limits.connections import ConnectionGuard
from huskyai.serve.limits.ratelimit import RateLimiter

HEADER_TIMEOUT = 2
BODY_TIMEOUT = 2
MAX_CONNECTIONS = 4


# --- an IPv6 /64 is one client ---

def test_an_ipv6_64_is_one_client_and_mapped_ipv4_is_ipv4():
    same = ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:DB8:1:2:0:0:0:99"]
    assert {client_address(a, [], 0) for a in same} == {"2001:db8:1:2::/64"}
    assert client_address("2001:db8:1:3::1", [], 0) == "2001:db8:1:3::/64"
    assert client_address("::ffff:198.51.100.7", [], 0) == "198.51.100.7"
    assert client_address("198.51.100.7", [], 0) == "198.51.100.7"
    # through one trusted proxy the forwarded address is bucketed the same way; a forged first hop is ignored
    assert client_address("10.0.0.1", ["2001:db8:9:9::7, 2001:db8:1:2::abcd"], 1) == "2001:db8:1:2::/64"
    assert client_address("10.0.0.1", ["::ffff:198.51.100.7"], 1) == "198.51.100.7"


def test_rotating_addresses_inside_one_64_does_not_escape_the_rate_limit():
    limiter = RateLimiter(per_minute=3)
    verdicts = [limiter.check(client_address(f"2001:db8:1:2::{i:x}", [], 0)) for i in range(1, 6)]
    assert verdicts[:3] == [None, None, None]
    assert all(wait is not None for wait in verdicts[3:])  # the 4th and 5th address of the /64 are refused
    assert limiter.check(client_address("2001:db8:1:3::1", [], 0)) is None  # the next /64 is not
    assert limiter.check(client_address("198.51.100.8", [], 0)) is None  # IPv4 stays per address


# --- the protocol around a tiny app: time the server holds a body back is not the client's ---

GUARD_DEADLINE = 0.5  # the tiny app's header and body deadlines (seconds)
LATE = 2.4 * GUARD_DEADLINE  # how long it holds a body back: well past either deadline


async def _late_reader(scope, receive, send) -> None:
    """Reads the body only after LATE seconds (as the app does when a prediction waits its turn), unless the
    path is /now; answers with the body's length."""
    if scope["type"] != "http":
        return
    if scope["path"] != "/now":
        await asyncio.sleep(LATE)
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@contextmanager
def guarded_server(app, max_per_client: int):
    """``app`` served by uvicorn in a thread, behind a ConnectionGuard with GUARD_DEADLINE for headers and body."""
    import uvicorn

    guard = ConnectionGuard(header_timeout=GUARD_DEADLINE, body_timeout=GUARD_DEADLINE, max_per_client=max_per_client)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=guard.protocol(), ws="none",
                                          lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    try:
        yield port, guard
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_body_the_app_reads_late_is_not_cut():
    with guarded_server(_late_reader, max_per_client=4) as (port, _):
        body = b"x" * 400_000  # more than the server buffers before it stops reading
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/", body=body)
        answer = conn.getresponse()
        assert (answer.status, answer.read()) == (200, b"400000")


def test_a_client_waiting_for_100_continue_is_not_cut():
    with guarded_server(_late_reader, max_per_client=4) as (port, _):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 100")  # asked only when the app reads, LATE s later
            s.sendall(b"hello")
            assert b"200 OK" in _read_until_closed_or(s, b"\r\n\r\n5")


def test_the_connection_count_is_given_back_when_connections_close():
    with guarded_server(_late_reader, max_per_client=2) as (port, guard):
        for _ in range(5):  # more connections one after another than the cap: each frees its place
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"POST /now HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                assert b"200 OK" in _read_until_closed_or(s, b"\r\n\r\n0")
        time.sleep(0.2)
        assert guard.open == {}


# --- the attacks on the real app ---

def _read_until_closed_or(s: socket.socket, marker: bytes, limit: float = 10) -> bytes:
    got, deadline = b"", time.time() + limit
    s.settimeout(0.2)
    while time.time() < deadline and marker not in got:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionError:
            break
        if not chunk:
            break
        got += chunk
    return got


def _drip(s: socket.socket, piece: bytes, every: float, limit: float) -> tuple[float | None, bytes]:
    """Send ``piece`` every ``every`` seconds until the server closes (its time and what it said) or ``limit``."""
    start, got = time.time(), b""
    s.settimeout(every)
    while time.time() - start < limit:
        try:
            s.sendall(piece)
        except OSError:
            return time.time() - start, got
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionError:
            return time.time() - start, got
        if not chunk:
            return time.time() - start, got
        got += chunk
    return None, got


@pytest.fixture(scope="module")
def app(shipped, tmp_path_factory):
    with served(shipped, tmp_path_factory.mktemp("deadlines"), header_timeout=HEADER_TIMEOUT,
                body_timeout=BODY_TIMEOUT, max_connections=MAX_CONNECTIONS, rate_limit=1000) as server:
        yield server


@pytest.mark.slow  # waits out a deadline
def test_slowloris_headers_are_cut_at_the_header_deadline(app):
    with socket.create_connection(("127.0.0.1", app["port"])) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        closed_after, said = _drip(s, b"X-Slow: still coming\r\n", every=0.5, limit=15)
    assert closed_after is not None, "a client sending one header line every 0.5 s was never cut off"
    assert closed_after < HEADER_TIMEOUT + 2
    assert said.startswith(b"HTTP/1.1 408")


@pytest.mark.slow
@pytest.mark.parametrize("request_head", [
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",  # a free route that never reads a body
    b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n",  # one that reads it
])
def test_a_trickled_body_is_cut(app, request_head):
    with socket.create_connection(("127.0.0.1", app["port"])) as s:
        s.sendall(request_head)
        # never silent for a whole deadline, but far slower than any real upload
        closed_after, said = _drip(s, b"x", every=0.3, limit=15)
    assert closed_after is not None, "a body trickled one byte every 0.3 s was never cut off"
    assert closed_after < BODY_TIMEOUT + 2


@pytest.mark.slow
def test_one_address_holds_only_its_share_of_connections(app):
    port = app["port"]
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3 * MAX_CONNECTIONS)]
    try:
        for s in held:
            s.sendall(b"GET / HTTP/1.1\r\n")  # headers begun, never finished
        answers = [_read_until_closed_or(s, b"\r\n\r\n", limit=1) for s in held[MAX_CONNECTIONS:]]
        assert all(a.startswith(b"HTTP/1.1 429") for a in answers), answers
        # someone at another address is answered meanwhile, a prediction included
        other = http.client.HTTPConnection("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=30)
        other.request("POST", "/api/v1/predict", body=jpeg_bytes(skimage_photo("chelsea")),
                      headers={"Content-Type": "image/jpeg"})
        answer = other.getresponse()
        assert answer.status == 200, answer.read()
        # and once the header deadline has dropped the slow ones, this address is answered again
        time.sleep(HEADER_TIMEOUT + 1)
        again = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        again.request("GET", "/")
        assert again.getresponse().status == 200
    finally:
        for s in held:
            s.close()
