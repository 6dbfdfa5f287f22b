"""Helpers shared by the benchmarks: photos, timing, a served app and raw-HTTP calls to it."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "huskies"
PHOTO = ROOT / "examples" / "chelsea.jpg"


def photos(n: int) -> list[Path]:
    """``n`` varied photos: the shared set where present, else the shipped examples repeated."""
    pool = sorted(SHARED.glob("*/*.jpg"))[:: max(1, len(list(SHARED.glob("*/*.jpg"))) // n or 1)] \
        if SHARED.is_dir() else []
    pool = pool or sorted((ROOT / "examples").glob("*.jpg"))
    return [pool[i % len(pool)] for i in range(n)]


def median_ms(fn, repeat: int = 30, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def rss_mb(pid: int | None = None) -> float:
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(cmd: list[str], port: int, extra_env: dict | None = None) -> tuple[subprocess.Popen, float]:
    """Start a server and return it with the seconds until its first HTTP 200."""
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
               PYTHONPATH=str(ROOT), **(extra_env or {}))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - t0 < 300:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise TimeoutError(url)


class CallRefused(RuntimeError):
    """The app answered the call with an error event (its message is the exception's text)."""


def client_from(address: str = "127.0.0.1", timeout: float = 60) -> httpx.Client:
    """An HTTP client whose requests leave from ``address`` (any 127.x.y.z is this machine's loopback)."""
    return httpx.Client(timeout=timeout, transport=httpx.HTTPTransport(local_address=address))


def _refusal(response: httpx.Response) -> str | None:
    """The app's message when it refused a request (HTTP 4xx/5xx), else None."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
        return str(body.get("detail") or body.get("error") or body) if isinstance(body, dict) else str(body)
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"


def raw_predict(base: str, photo: Path | bytes, api: str = "predict", client: httpx.Client | None = None,
                name: str = "photo.jpg") -> list:
    """Gradio's raw HTTP protocol: upload the file, start the call, read the result stream.

    Any refusal (an HTTP error on the upload or the call, or an error event) raises CallRefused."""
    c = client or httpx.Client(timeout=60)
    data = photo if isinstance(photo, bytes) else Path(photo).read_bytes()
    name = name if isinstance(photo, bytes) else Path(photo).name
    uploaded = c.post(f"{base}gradio_api/upload", files={"files": (name, data, "image/jpeg")})
    if (message := _refusal(uploaded)) is not None:
        raise CallRefused(message)
    return call_with_path(base, uploaded.json()[0], api, c)


def call_with_path(base: str, path: str, api: str = "predict", client: httpx.Client | None = None) -> list:
    """Start a call naming a file already on the server, and read its result stream."""
    c = client or httpx.Client(timeout=60)
    payload = {"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}]}
    started = c.post(f"{base}gradio_api/call/{api}", json=payload)
    if (message := _refusal(started)) is not None:
        raise CallRefused(message)
    event = started.json()["event_id"]
    text = c.get(f"{base}gradio_api/call/{api}/{event}").text
    lines = text.strip().splitlines()
    if not any(line.startswith("event: complete") for line in lines):
        last = lines[-1].removeprefix("data: ") if lines else ""
        try:
            message = json.loads(last) if last else text
        except ValueError:
            message = last
        raise CallRefused(message if isinstance(message, str) else json.dumps(message))
    return json.loads(lines[-1].removeprefix("data: "))


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
