"""App start-up against a bare ``import gradio``, in one run (issue #17: ready within 1.5 s of it).

    python bench/startup.py [--rounds 5] [--tutorial]

Each round runs, one after the other, a process that only does ``import gradio`` and a fresh
``python app.py``, timed from process start to its first answered /predict (raw HTTP, as a client
would ask). The order alternates between rounds, so drift in this shared machine's load hits both
sides alike. Prints every round, the medians, and the median of the per-round differences; then the
warm raw-HTTP /predict round trip against model.predict in a process of its own. ``--tutorial`` adds
a fastai + Gradio tutorial app (bench/fastai_tutorial_app.py) for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from common import PHOTO, ROOT, free_port, rss_mb, stop
from huskyai.redteam.client import raw_predict

MODEL_PREDICT = """
import json
from common import PHOTO, median_ms
import huskyai
m = huskyai.load()
print(json.dumps(median_ms(lambda: m.predict(PHOTO), repeat=30, warmup=5)))
"""
TARGET_S = 1.5


def bare_gradio() -> tuple[float, float]:
    """Seconds for a fresh interpreter to run ``import gradio`` and exit: wall clock, and CPU (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gradio"], check=True, cwd=ROOT,
                   env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"))
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, every thread) a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def started(cmd: list[str], port: int, env: dict, client: httpx.Client) -> tuple[subprocess.Popen, float]:
    """Start a server and wait for its first HTTP 200, polling through one client: a fresh httpx client per
    poll (as common.start_server does) builds an SSL context each time, ~30 ms of CPU every 50 ms, taken
    from the very server whose start is being timed."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, GRADIO_SERVER_PORT=str(port),
                                                    GRADIO_ANALYTICS_ENABLED="False", **env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while time.perf_counter() - t0 < 300:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd} exited with {proc.returncode}")
        try:
            if client.get(f"http://127.0.0.1:{port}/").status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.HTTPError:
            time.sleep(0.02)
    stop(proc)
    raise TimeoutError(cmd)


def first_answer(cmd: list[str], api: str = "predict", extra_env: dict | None = None,
                 round_trips: int = 0) -> dict:
    """Seconds from starting ``cmd`` to its first answered /predict; with ``round_trips``, the median warm
    round trip (ms) and the server's RSS too."""
    port = free_port()
    t0 = time.perf_counter()
    base = f"http://127.0.0.1:{port}/"
    with httpx.Client(timeout=60) as client:
        # no rate limit and no audit file: this measures speed (bench/load.py measures the limit)
        proc, first_200 = started(cmd, port, {"HUSKYAI_RATE_LIMIT": "0", "HUSKYAI_AUDIT_LOG": "off"}
                                  | (extra_env or {}), client)
        try:
            raw_predict(base, PHOTO, api, client)
            result = {"first_200": first_200, "answered": time.perf_counter() - t0, "cpu": cpu_seconds(proc.pid)}
            trips = []
            for _ in range(round_trips):
                t = time.perf_counter()
                raw_predict(base, PHOTO, api, client)
                trips.append(time.perf_counter() - t)
            if round_trips:
                result |= {"round_trip_ms": statistics.median(trips) * 1000, "rss": rss_mb(proc.pid)}
        finally:
            stop(proc)
    return result


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def alternating(rounds: int) -> None:
    print(f"load average at the start: {load_average()}")
    print("wall clock (CPU seconds of the process in brackets: less sensitive to the other load on the machine)")
    print(f"{'round':>5} {'import gradio':>20} {'app: first 200':>15} {'app: answered':>20} {'difference':>18}")
    rows = []
    for r in range(rounds):
        if r % 2 == 0:
            g = bare_gradio()
            a = first_answer([sys.executable, "app.py"])
        else:
            a = first_answer([sys.executable, "app.py"])
            g = bare_gradio()
        rows.append((g[0], g[1], a["answered"], a["cpu"], a["answered"] - g[0], a["cpu"] - g[1]))
        print(f"{r + 1:>5} {g[0]:>7.2f}s ({g[1]:5.2f}s cpu) {a['first_200']:>14.2f}s {a['answered']:>7.2f}s "
              f"({a['cpu']:5.2f}s cpu) {rows[-1][4]:>+6.2f}s ({rows[-1][5]:+5.2f}s cpu)", flush=True)
    m = [statistics.median(column) for column in zip(*rows)]
    print(f"median {m[0]:>6.2f}s ({m[1]:5.2f}s cpu) {'':>15} {m[2]:>7.2f}s ({m[3]:5.2f}s cpu) {m[4]:>+6.2f}s "
          f"({m[5]:+5.2f}s cpu)")
    verdict = "meets" if m[4] <= TARGET_S else "misses"
    print(f"ready to answer {m[4]:.2f} s after a bare 'import gradio' (median of the per-round differences, wall "
          f"clock; {m[5]:.2f} s of CPU; target <= {TARGET_S} s): {verdict}; load average at the end: "
          f"{load_average()}")


def round_trip() -> None:
    model_ms = json.loads(subprocess.run([sys.executable, "-c", MODEL_PREDICT], capture_output=True, text=True,
                                         cwd=ROOT / "bench", check=True).stdout)
    husky = first_answer([sys.executable, "app.py"], round_trips=30)
    print(f"warm raw-HTTP /predict round trip {husky['round_trip_ms']:.1f} ms (median of 30); model.predict in its "
          f"own process {model_ms:.1f} ms; the difference {husky['round_trip_ms'] - model_ms:.1f} ms; "
          f"serving RSS {husky['rss']:.0f} MB")


def tutorial() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pickle = Path(tmp) / "export.pkl"
        subprocess.run([sys.executable, "-c", f"import huskyai; huskyai.load_learner().export({str(pickle)!r})"],
                       check=True, capture_output=True)
        app = first_answer([sys.executable, "app.py"], round_trips=5)
        other = first_answer([sys.executable, "bench/fastai_tutorial_app.py"], extra_env={
            "HUSKYAI_BENCH_PICKLE": str(pickle)}, round_trips=5)
    print(f"fastai tutorial app: answered after {other['answered']:.1f} s, RSS {other['rss']:.0f} MB; "
          f"app.py in the same run {app['answered']:.1f} s, RSS {app['rss']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of import gradio and app.py")
    parser.add_argument("--tutorial", action="store_true", help="also start the fastai tutorial app, for scale")
    args = parser.parse_args()
    alternating(args.rounds)
    round_trip()
    if args.tutorial:
        tutorial()


if __name__ == "__main__":
    main()
