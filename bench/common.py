"""Helpers shared by the benchmarks: photos, timing and a served app (raw-HTTP calls to it: huskyai.redteam.client)."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
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
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", **(extra_env or {}))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    # one client for every poll: a new one per poll builds an SSL context, ~30 ms of CPU taken from the server
    with httpx.Client(timeout=2) as http:
        while time.perf_counter() - t0 < 300:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd} exited with {proc.returncode}")
            try:
                if http.get(url).status_code == 200:
                    return proc, time.perf_counter() - t0
            except httpx.HTTPError:
                time.sleep(0.05)
    proc.kill()
    raise TimeoutError(url)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
