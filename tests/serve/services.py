"""Debian's redis-server and nginx, run by the tests as a user runs them (deploy/README.md): in the foreground, on
loopback, from a temporary folder of their own, stopped (and the folder removed) at the end.

``deploy/nginx.conf`` is used as shipped: :func:`shipped_config` changes only the listen port, the two replicas'
ports and, to stay quick, the two client deadlines, and checks that each of those lines is still there to change.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import ROOT, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
DEPLOY = ROOT / "deploy"
CLIENT_TIMEOUT = 2  # nginx's header and body deadlines in the tests (10 s and 30 s as shipped)
HAVE_NGINX = os.access(NGINX, os.X_OK)
HAVE_REDIS = os.access(REDIS, os.X_OK)


def shipped_config(listen_port: int, first: int, second: int | None = None) -> str:
    """deploy/nginx.conf listening on ``listen_port`` in front of the replicas on ``first`` and ``second`` (the
    same app twice when there is one)."""
    text = (DEPLOY / "nginx.conf").read_text()
    second = first if second is None else second
    for old, new, times in [("listen 8080;", f"listen 127.0.0.1:{listen_port};", 1),
                            ("server 127.0.0.1:7860", f"server 127.0.0.1:{first}", 2),
                            ("server 127.0.0.1:7861", f"server 127.0.0.1:{second}", 2),
                            ("client_header_timeout 10s;", f"client_header_timeout {CLIENT_TIMEOUT}s;", 1),
                            ("client_body_timeout 30s;", f"client_body_timeout {CLIENT_TIMEOUT}s;", 1)]:
        assert text.count(old) == times, f"deploy/nginx.conf should have {old!r} {times} times"
        text = text.replace(old, new)
    return text


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{out}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if time.time() > deadline:
            raise TimeoutError(f"{what} did not start listening on {port}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running_nginx(config: str, port: int) -> Iterator[Path]:
    """nginx in the foreground from a fresh prefix (readable by its workers when it runs as root)."""
    prefix = Path(tempfile.mkdtemp(prefix="huskyai-nginx-"))
    prefix.chmod(0o755)
    shutil.copy(DEPLOY / "nginx-client.conf", prefix / "nginx-client.conf")
    (prefix / "nginx.conf").write_text(config)
    proc = subprocess.Popen([NGINX, "-p", f"{prefix}/", "-e", "stderr", "-c", str(prefix / "nginx.conf"),
                             "-g", f"daemon off; pid {prefix}/nginx.pid;"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port, proc, "nginx")
        yield prefix
    finally:
        stop(proc)
        shutil.rmtree(prefix, ignore_errors=True)


@dataclass
class Redis:
    """A redis-server of the test's own; :meth:`stop` and :meth:`start` take it away and bring it back on the
    same port (an empty one: it keeps nothing on disk)."""

    port: int
    folder: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> Redis:
        self.proc = subprocess.Popen([REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.folder), "--protected-mode", "yes"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for_port(self.port, self.proc, "redis-server")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


@contextlib.contextmanager
def running_redis() -> Iterator[Redis]:
    folder = Path(tempfile.mkdtemp(prefix="huskyai-redis-"))
    redis = Redis(free_port(), folder).start()
    try:
        yield redis
    finally:
        redis.stop()
        shutil.rmtree(folder, ignore_errors=True)
