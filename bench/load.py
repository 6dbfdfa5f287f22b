"""Load and flood test of the app on loopback, bounded in count and time.

    python bench/load.py [--requests 200] [--clients 20] [--limit 8]

20 clients, each from its own loopback address (127.0.0.11, .12, ...), send 200 requests between
them to a fresh app.py whose per-client limit is --limit a minute, then the same again from new
addresses (--waves in all). It reports server errors (must be 0), requests refused by the rate
limit (each client past its limit), whether every accepted answer is right, and the server's
memory before, during and after each wave.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import CallRefused, client_from, free_port, raw_predict, rss_mb, start_server, stop

DEADLINE_S = 240


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--limit", type=int, default=8, help="per-client requests a minute in the app")
    parser.add_argument("--waves", type=int, default=3, help="identical waves, each from new addresses")
    args = parser.parse_args()
    import huskyai  # after common, which puts the project on sys.path

    examples = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.jpg"))
    model = huskyai.load()
    expected = {p.name: model.predict(p).label for p in examples}
    with tempfile.TemporaryDirectory() as work:
        port = free_port()
        proc, _ = start_server([sys.executable, "app.py"], port, {
            "HUSKYAI_RATE_LIMIT": str(args.limit), "HUSKYAI_AUDIT_LOG": str(Path(work) / "audit.jsonl"),
            "GRADIO_TEMP_DIR": str(Path(work) / "cache")})
        base = f"http://127.0.0.1:{port}/"
        rss = {"start": rss_mb(proc.pid)}
        outcomes: dict[str, int] = {"answered": 0, "wrong": 0, "limited": 0, "server_error": 0}
        latencies: list[float] = []
        lock = threading.Lock()
        started = time.perf_counter()

        def one_client(i: int) -> None:
            n = args.requests // args.clients + (1 if i < args.requests % args.clients else 0)
            with client_from(f"127.0.0.{11 + i}") as http:
                for k in range(n):
                    if time.perf_counter() - started > DEADLINE_S:
                        return
                    photo = examples[(i + k) % len(examples)]
                    t = time.perf_counter()
                    try:
                        label = raw_predict(base, photo, client=http)[0]["label"]
                        key = "answered" if label == expected[photo.name] else "wrong"
                    except CallRefused as err:
                        key = "limited" if "Slow down" in str(err) else "server_error"
                    except Exception:  # noqa: BLE001 - any other failure counts against the server
                        key = "server_error"
                    with lock:
                        outcomes[key] += 1
                        if key == "answered":
                            latencies.append(time.perf_counter() - t)

        sampler_stop = threading.Event()
        peak = [rss["start"]]

        def sample() -> None:
            while not sampler_stop.wait(0.5):
                peak[0] = max(peak[0], rss_mb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(one_client, range(args.clients)))
        sampler_stop.set()
        elapsed = time.perf_counter() - started
        rss["after wave 1"] = rss_mb(proc.pid)
        # more identical waves from new addresses: memory must level off, not climb
        for wave in range(1, args.waves):
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(lambda i, w=wave: one_client(i + w * args.clients), range(args.clients)))
            rss[f"after wave {wave + 1}"] = rss_mb(proc.pid)
        stop(proc)

    total = sum(outcomes.values())
    allowed = args.clients * min(args.limit, args.requests // args.clients) * args.waves
    print(f"{total} requests from {args.clients} clients x {args.waves} waves in {elapsed:.0f} s (first wave), "
          f"per-client limit {args.limit}/min")
    print(f"answered correctly {outcomes['answered']}, answered wrongly {outcomes['wrong']}, "
          f"refused by the rate limit {outcomes['limited']}, server errors {outcomes['server_error']}")
    print(f"expected answered at most {allowed}; median answered latency "
          f"{statistics.median(latencies) * 1000:.0f} ms under load")
    print("server RSS: " + ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items())
          + f", peak during wave 1 {peak[0]:.0f} MB")
    growth = [b - a for a, b in zip(list(rss.values())[1:], list(rss.values())[2:])]
    ok = outcomes["server_error"] == 0 and outcomes["wrong"] == 0 and outcomes["limited"] > 0 \
        and all(g < 50 for g in growth)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
