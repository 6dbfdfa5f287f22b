"""App start-up and serving, in one run: Husky AI's app.py against a fastai + Gradio tutorial app.

    python bench/startup.py

For each app: seconds from process start to the first HTTP 200 and to the first answered /predict,
the serving process's RSS, and the raw-HTTP /predict round trip (median of 30) next to
model.predict in a process of its own.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from common import PHOTO, ROOT, free_port, rss_mb, start_server, stop
from huskyai.redteam.client import raw_predict

MODEL_PREDICT = """
import json
from common import PHOTO, median_ms
import huskyai
m = huskyai.load()
print(json.dumps(median_ms(lambda: m.predict(PHOTO), repeat=30, warmup=5)))
"""


def measure(name: str, cmd: list[str], api: str, extra_env: dict | None = None) -> dict:
    port = free_port()
    t0 = time.perf_counter()
    # no rate limit and no audit file: this measures speed (bench/load.py measures the limit)
    proc, first_200 = start_server(cmd, port, {"HUSKYAI_RATE_LIMIT": "0", "HUSKYAI_AUDIT_LOG": "off"}
                                   | (extra_env or {}))
    base = f"http://127.0.0.1:{port}/"
    try:
        with httpx.Client(timeout=60) as client:
            raw_predict(base, PHOTO, api, client)
            first_answer = time.perf_counter() - t0
            for _ in range(3):
                raw_predict(base, PHOTO, api, client)
            trips = []
            for _ in range(30):
                t = time.perf_counter()
                raw_predict(base, PHOTO, api, client)
                trips.append(time.perf_counter() - t)
        rss = rss_mb(proc.pid)
    finally:
        stop(proc)
    return {"name": name, "first_200": first_200, "first_answer": first_answer,
            "round_trip_ms": statistics.median(trips) * 1000, "rss": rss}


def main() -> None:
    model_ms = json.loads(subprocess.run([sys.executable, "-c", MODEL_PREDICT], capture_output=True, text=True,
                                         cwd=ROOT / "bench", check=True).stdout)
    # three starts: this VM's disk cache and CPU drift by a second or more between runs
    starts = [measure("huskyai app.py", [sys.executable, "app.py"], "predict") for _ in range(3)]
    husky = sorted(starts, key=lambda r: r["first_answer"])[1] | {"name": "huskyai app.py (median of 3)"}
    with tempfile.TemporaryDirectory() as tmp:
        pickle = Path(tmp) / "export.pkl"
        subprocess.run([sys.executable, "-c", f"import huskyai; huskyai.load_learner().export({str(pickle)!r})"],
                       check=True, capture_output=True)
        tutorial = measure("fastai tutorial app", [sys.executable, "bench/fastai_tutorial_app.py"], "predict",
                           {"HUSKYAI_BENCH_PICKLE": str(pickle)})
    print(f"{'':34s} {'first 200':>10s} {'answered':>10s} {'round trip':>11s} {'RSS':>8s}")
    for r in (husky, tutorial):
        print(f"{r['name']:34s} {r['first_200']:9.1f}s {r['first_answer']:9.1f}s "
              f"{r['round_trip_ms']:9.1f}ms {r['rss']:6.0f}MB")
    print("huskyai app.py, each start: " + ", ".join(f"{r['first_answer']:.1f}s" for r in starts))
    print(f"model.predict in its own process: {model_ms:.1f} ms; raw-HTTP round trip minus it: "
          f"{husky['round_trip_ms'] - model_ms:.1f} ms (target <= 30)")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gradio"], check=True)
    gradio_import = time.perf_counter() - t
    print(f"for scale: a process that only runs 'import gradio' takes {gradio_import:.1f} s here")
    print(f"ready to answer: {husky['first_answer']:.1f} s (target <= 5), "
          f"{tutorial['first_answer'] / husky['first_answer']:.1f}x faster than the tutorial app")
    print(f"serving RSS: {husky['rss']:.0f} MB (target <= 600), tutorial app {tutorial['rss']:.0f} MB")


if __name__ == "__main__":
    main()
