"""Load, attack and soak tests of the app on loopback, bounded in count and time.

    python bench/load.py [--mode waves] [--requests 200] [--clients 20] [--limit 8] [--waves 3]
    python bench/load.py --mode adversarial [--seconds 40]
    python bench/load.py --mode sustained [--minutes 10]
    python bench/load.py --mode throughput [--configs gradio:8:8,lean:8:8] [--rounds 3] [--requests 300]
    python bench/load.py --mode service [--rounds 3] [--requests 200] [--clients 8]

waves: 20 clients, each from its own loopback address (127.0.0.11, .12, ...), send 200 requests
between them to a fresh app.py whose per-client limit is --limit a minute, then the same again from
new addresses (--waves in all). Reports server errors (must be 0), requests refused by the rate
limit, whether every accepted answer is right, and the server's memory after each wave.

adversarial: 10 honest clients (127.0.0.11-20) ask at a person's pace, first alone (calm), then
while one attacker (127.0.0.99) sends decoding bombs (an RLE BMP of 4,000,000 x 16 px, a 16-bit
8000x8000 PNG, a 20000x20000 PNG header), floods the queue, floods uploads and sends oversized
bodies (announced and streamed), then alone again (calm, to see drift). Reports the honest clients'
p50/p95 latency and errors in each phase. Must: 0 honest errors, honest p95 under attack within
3x of calm.

throughput: 20 clients ask back to back (rate limit off) through gradio's API or the lean /api/v1/predict
route, in fresh apps with the engine queue on or off, alternating rounds; req/s, p50 and p95 against the
unbatched gradio path in the same run.

sustained: two clients ask back to back (the predictor's pace, the queue runs two at a time) for
--minutes, with varied photos; the server's RSS is sampled every 5 s. Must: no errors, and memory
levels off (over the last third of the run it moves within 40 MB).

service: the app run as a service (deploy/): one replica asked directly (limits in memory, the baseline),
the same replica through nginx (the proxy hop), a replica whose limits live in Redis asked directly (Redis
against memory), and two Redis replicas behind nginx (one against two), in alternating rounds on the same
photos, through the lean /api/v1/predict route with the limits on but never reached. Each round measures one
client asking back to back (latency: p50, p95) and --clients clients at once (throughput: req/s), and the
limiter's own check, memory against Redis. Ratios are against the baseline of the same round.

Every address is on loopback (127.0.0.x).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from common import free_port, rss_mb, start_server, stop
from huskyai.redteam.client import CallRefused, client_from, raw_predict

DEADLINE_S = 240
EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.jpg"))
HONEST = [f"127.0.0.{11 + i}" for i in range(10)]
ATTACKER = "127.0.0.99"


def serve(work: str, **env: str):
    port = free_port()
    proc, _ = start_server([sys.executable, "app.py"], port, {
        "HUSKYAI_AUDIT_LOG": str(Path(work) / "audit.jsonl"), "GRADIO_TEMP_DIR": str(Path(work) / "cache"), **env})
    return proc, f"http://127.0.0.1:{port}/", port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


class PeakRss:
    """The server's peak RSS (MB), sampled every half second in a thread while the ``with`` block runs."""

    def __init__(self, pid: int, start: float = 0.0):
        self.pid, self.peak = pid, start
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __enter__(self) -> PeakRss:
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()


# --- waves ------------------------------------------------------------------------------------------------------

def run_waves(args: argparse.Namespace) -> int:
    import huskyai

    model = huskyai.load()
    expected = {p.name: model.predict(p).label for p in EXAMPLES}
    with tempfile.TemporaryDirectory() as work:
        proc, base, _ = serve(work, HUSKYAI_RATE_LIMIT=str(args.limit))
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
                    photo = EXAMPLES[(i + k) % len(EXAMPLES)]
                    t = time.perf_counter()
                    try:
                        label = raw_predict(base, photo, client=http)[0]["label"]
                        key = "answered" if label == expected[photo.name] else "wrong"
                    except CallRefused as err:
                        key = "limited" if "Slow down" in str(err) or "at a time" in str(err) else "server_error"
                    except Exception:  # noqa: BLE001 - any other failure counts against the server
                        key = "server_error"
                    with lock:
                        outcomes[key] += 1
                        if key == "answered":
                            latencies.append(time.perf_counter() - t)

        with PeakRss(proc.pid, rss["start"]) as peak, ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(one_client, range(args.clients)))
        elapsed = time.perf_counter() - started
        rss["after wave 1"] = rss_mb(proc.pid)
        # more identical waves from new addresses: memory must level off, not climb
        for wave in range(1, args.waves):
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(lambda i, w=wave: one_client(i + w * args.clients), range(args.clients)))
            rss[f"after wave {wave + 1}"] = rss_mb(proc.pid)
        stop(proc)
    return report_waves(args, outcomes, latencies, elapsed, rss, peak.peak)


def report_waves(args: argparse.Namespace, outcomes: dict[str, int], latencies: list[float], elapsed: float,
                 rss: dict[str, float], peak: float) -> int:
    total = sum(outcomes.values())
    allowed = args.clients * min(args.limit, args.requests // args.clients) * args.waves
    print(f"{total} requests from {args.clients} clients x {args.waves} waves in {elapsed:.0f} s (first wave), "
          f"per-client limit {args.limit}/min")
    print(f"answered correctly {outcomes['answered']}, answered wrongly {outcomes['wrong']}, "
          f"refused by the limits {outcomes['limited']}, server errors {outcomes['server_error']}")
    print(f"expected answered at most {allowed}; median answered latency "
          f"{statistics.median(latencies) * 1000:.0f} ms under load")
    print("server RSS: " + ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items())
          + f", peak during wave 1 {peak:.0f} MB")
    growth = [b - a for a, b in zip(list(rss.values())[1:], list(rss.values())[2:])]
    ok = outcomes["server_error"] == 0 and outcomes["wrong"] == 0 and outcomes["limited"] > 0 \
        and all(g < 50 for g in growth)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


# --- adversarial ------------------------------------------------------------------------------------------------

def rle_bmp_bomb(width: int = 4_000_000, height: int = 16) -> bytes:
    """A ~1 KB 8-bit RLE BMP claiming width x height: plain Pillow spends seconds per row on its padding."""
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    pixels = b"\x00\x00" * height + b"\x00\x01"  # an end-of-line per row, then end-of-bitmap
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


def png16_bomb(side: int = 8000) -> bytes:
    """A ~124 KB 16-bit greyscale PNG of side x side zeros (1.6 GB through float64 arrays)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    raw = zlib.compress(b"\x00" * ((1 + 2 * side) * side), 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def png_header_bomb(side: int = 20000) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * (1 + 3 * side) * 4, 9)) + chunk(b"IEND", b""))


class Attacker:
    """One address, four threads: bombs, a queue flood, an upload flood, oversized bodies. It runs in a
    process of its own, so that its threads do not take the honest clients' GIL."""

    def __init__(self, base: str, port: int, stop, only: str = ""):
        self.base, self.port, self.only = base, port, only
        self.stop = stop
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.bombs = {"rle.bmp": rle_bmp_bomb(), "grey16.png": png16_bomb(), "header.png": png_header_bomb()}

    def note(self, key: str) -> None:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def bomber(self) -> None:
        with client_from(ATTACKER, timeout=120) as c:
            while not self.stop.is_set():
                for name, data in self.bombs.items():
                    try:
                        raw_predict(self.base, data, client=c, name=name)
                        self.note(f"bomb {name} answered")
                    except CallRefused as err:
                        self.note(f"bomb refused: {_kind(str(err))}")
                    except httpx.HTTPError:
                        self.note("bomb: connection error")

    def queue_flood(self) -> None:
        with client_from(ATTACKER) as c:
            path = None
            while not self.stop.is_set():
                try:
                    if path is None:
                        r = c.post(f"{self.base}gradio_api/upload",
                                   files={"files": ("f.jpg", EXAMPLES[0].read_bytes())})
                        path = r.json()[0] if r.status_code == 200 else None
                        if path is None:
                            self.note(f"flood upload HTTP {r.status_code}")
                            time.sleep(0.05)
                            continue
                    r = c.post(f"{self.base}gradio_api/call/predict",
                               json={"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}]})
                    self.note(f"queue flood HTTP {r.status_code}")
                except httpx.HTTPError:
                    self.note("queue flood: connection error")

    def upload_flood(self) -> None:
        big = b"\xff\xd8\xff" + bytes(9 * 1024 * 1024)
        with client_from(ATTACKER) as c:
            while not self.stop.is_set():
                try:
                    r = c.post(f"{self.base}gradio_api/upload", files={"files": ("big.jpg", big, "image/jpeg")})
                    self.note(f"upload flood HTTP {r.status_code}")
                except httpx.HTTPError:
                    self.note("upload flood: connection error")

    def oversized(self) -> None:
        def stream():
            for _ in range(400):
                yield b" " * (1024 * 1024)
        with client_from(ATTACKER) as c:
            while not self.stop.is_set():
                try:
                    r = c.post(f"{self.base}gradio_api/call/predict", content=stream(),
                               headers={"content-type": "application/json"})
                    self.note(f"streamed 400 MB body HTTP {r.status_code}")
                except httpx.HTTPError:
                    self.note("streamed 400 MB body: cut off")
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=10,
                                                  source_address=(ATTACKER, 0)) as s:
                        s.sendall(b"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 400000000\r\n"
                                  b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
                        self.note(f"announced 400 MB body {s.recv(64).split(b' ')[1].decode() or '?'}")
                except (OSError, IndexError):
                    self.note("announced 400 MB body: connection error")
                time.sleep(0.2)

    def run(self) -> dict[str, int]:
        threads = [threading.Thread(target=f, daemon=True)
                   for f in (self.bomber, self.queue_flood, self.upload_flood, self.oversized)
                   if self.only in f.__name__]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        return self.counts


def attack(base: str, port: int, stop, results, only: str = "") -> None:
    """The attacker process: attacks until ``stop`` is set, then puts its counts on ``results``."""
    results.put(Attacker(base, port, stop, only).run())


def _kind(message: str) -> str:
    for key in ("Slow down", "at a time", "too large", "megapixels", "pixels", "limit", "BMP", "memory"):
        if key in message:
            return key
    return message[:60]


def honest_phase(base: str, seconds: float, pause: float) -> tuple[list[float], list[str]]:
    """The 10 honest clients, each asking, reading the answer, pausing, for ``seconds``."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def one(i: int) -> None:
        with client_from(HONEST[i], timeout=120) as c:
            k = 0
            while time.perf_counter() < end:
                photo = EXAMPLES[(i + k) % len(EXAMPLES)]
                k += 1
                t = time.perf_counter()
                try:
                    raw_predict(base, photo, client=c)
                    with lock:
                        latencies.append(time.perf_counter() - t)
                except Exception as err:  # noqa: BLE001 - every failure of an honest client counts
                    with lock:
                        errors.append(f"{type(err).__name__}: {str(err)[:120]}")
                time.sleep(pause)

    with ThreadPoolExecutor(len(HONEST)) as pool:
        list(pool.map(one, range(len(HONEST))))
    return latencies, errors


def run_adversarial(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as work:
        # a person asks every few seconds; 60 a minute leaves them room and stops the attacker's floods
        proc, base, port = serve(work, HUSKYAI_RATE_LIMIT="60")
        honest_phase(base, 5, args.pause)  # warm-up
        rss = {"start": rss_mb(proc.pid)}
        results = {}
        results["calm"] = honest_phase(base, args.seconds, args.pause)
        rss["after calm"] = rss_mb(proc.pid)
        import multiprocessing

        stop_attack, attack_counts = multiprocessing.Event(), multiprocessing.Queue()
        attacker = multiprocessing.Process(target=attack, args=(base, port, stop_attack, attack_counts,
                                                                     args.only))
        attacker.start()
        with PeakRss(proc.pid) as peak:
            time.sleep(2)  # let the attack get going before measuring
            results["under attack"] = honest_phase(base, args.seconds, args.pause)
            stop_attack.set()
            counts = attack_counts.get(timeout=180)
            attacker.join(timeout=30)
        rss["after attack"] = rss_mb(proc.pid)
        results["calm again"] = honest_phase(base, args.seconds, args.pause)
        audit = [json.loads(line) for line in (Path(work) / "audit.jsonl").read_text().splitlines()]
        cache_files = [p for p in (Path(work) / "cache").rglob("*") if p.is_file()]
        stop(proc)
    return report_adversarial(args, results, counts, audit, rss, peak.peak, len(cache_files))


def report_adversarial(args: argparse.Namespace, results: dict, counts: dict[str, int], audit: list[dict],
                       rss: dict[str, float], peak: float, cache_files: int) -> int:
    print(f"10 honest clients (127.0.0.11-20), each asking then pausing {args.pause} s, {args.seconds:.0f} s a phase;"
          f" attacker {ATTACKER}")
    print(f"{'phase':<14} {'answered':>8} {'errors':>6} {'p50 ms':>7} {'p95 ms':>7}")
    for phase, (lat, errs) in results.items():
        print(f"{phase:<14} {len(lat):>8} {len(errs):>6} {percentile(lat, .5) * 1000:>7.0f} "
              f"{percentile(lat, .95) * 1000:>7.0f}")
    for phase, (_, errs) in results.items():
        for e in sorted(set(errs))[:5]:
            print(f"  {phase} error: {e}")
    print("attacker's requests: " + "; ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    refusals: dict[str, int] = {}
    for e in audit:
        if e["refused"]:
            key = e["refused"].split(":")[0][:50]
            refusals[key] = refusals.get(key, 0) + 1
    print("audit lines of refusals: " + "; ".join(f"{k}: {v}" for k, v in sorted(refusals.items())))
    print("server RSS: " + ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items())
          + f", peak under attack {peak:.0f} MB; files left in the cache {cache_files}")
    calm_p95 = max(percentile(results["calm"][0], .95), percentile(results["calm again"][0], .95))
    attack_p95 = percentile(results["under attack"][0], .95)
    honest_errors = sum(len(errs) for _, errs in results.values())
    print(f"honest p95 under attack / calm (the slower of the two calm phases): {attack_p95 / calm_p95:.2f}x "
          "(must be <= 3)")
    ok = honest_errors == 0 and attack_p95 <= 3 * calm_p95
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


# --- sustained --------------------------------------------------------------------------------------------------

def run_sustained(args: argparse.Namespace) -> int:
    from common import photos

    pool = photos(64)
    with tempfile.TemporaryDirectory() as work:
        proc, base, _ = serve(work, HUSKYAI_RATE_LIMIT="0")
        samples: list[tuple[float, float]] = []
        counts = {"answered": 0, "errors": 0}
        errors: list[str] = []
        lock = threading.Lock()
        start = time.perf_counter()
        end = start + args.minutes * 60

        def client(i: int) -> None:
            with client_from(f"127.0.0.{50 + i}", timeout=120) as c:
                k = i
                while time.perf_counter() < end:
                    photo = pool[k % len(pool)]
                    k += 2
                    try:
                        raw_predict(base, photo, client=c)
                        with lock:
                            counts["answered"] += 1
                    except Exception as err:  # noqa: BLE001
                        with lock:
                            counts["errors"] += 1
                            errors.append(str(err)[:120])

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(2)]
        for t in threads:
            t.start()
        while time.perf_counter() < end:
            samples.append((time.perf_counter() - start, rss_mb(proc.pid)))
            time.sleep(5)
        for t in threads:
            t.join(timeout=120)
        cache_files = sum(1 for p in (Path(work) / "cache").rglob("*") if p.is_file())
        stop(proc)
    return report_sustained(args, counts, errors, samples, time.perf_counter() - start, cache_files)


def report_sustained(args: argparse.Namespace, counts: dict[str, int], errors: list[str],
                     samples: list[tuple[float, float]], elapsed: float, cache_files: int) -> int:
    print(f"{args.minutes:g} minutes, 2 clients back to back: {counts['answered']} answered "
          f"({counts['answered'] / elapsed:.1f}/s), {counts['errors']} errors; files in the cache at the end "
          f"{cache_files}")
    for e in sorted(set(errors))[:5]:
        print("  error:", e)
    per_minute = {}
    for t, mb in samples:
        per_minute.setdefault(int(t // 60), []).append(mb)
    print("server RSS by minute (max of the 5 s samples): "
          + ", ".join(f"{m + 1}: {max(v):.0f}" for m, v in sorted(per_minute.items())) + " MB")
    first = samples[0][1]
    third = [mb for t, mb in samples if t >= elapsed * 2 / 3]
    growth = max(third) - min(third)
    print(f"first sample {first:.0f} MB, peak {max(mb for _, mb in samples):.0f} MB; "
          f"the last third moves within {growth:.0f} MB")
    ok = counts["errors"] == 0 and growth < 40.0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


# --- throughput ---------------------------------------------------------------------------------------------------

def lean_predict(base: str, photo: bytes, client: httpx.Client) -> dict:
    """One photo through the lean route (huskyai.serve.rest): its bytes as the body, the JSON answer back."""
    response = client.post(f"{base}api/v1/predict", content=photo, headers={"content-type": "image/jpeg"})
    response.raise_for_status()
    return response.json()


def throughput_round(photos: list[bytes], clients: int, requests: int, path: str, **env: str) -> dict:
    """A fresh app.py with ``env``, rate limit off; ``clients`` ask back to back through ``path`` ("gradio":
    upload, join, event stream; "lean": POST /api/v1/predict) until ``requests`` are answered."""
    ask = raw_predict if path == "gradio" else lean_predict
    with tempfile.TemporaryDirectory(prefix="huskyai-throughput-") as work:
        proc, base, _ = serve(work, HUSKYAI_RATE_LIMIT="0", HUSKYAI_MAX_IN_FLIGHT="100", **env)
        try:
            ask(base, photos[0], client=client_from())  # the first answer warms the engine
            latencies, wall = clients_at_once(base, photos, clients, requests, 11, ask)
        finally:
            stop(proc)
    return {"rps": len(latencies) / wall, "p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95)}


def clients_at_once(base: str, photos: list[bytes], clients: int, requests: int, first_address: int,
                    ask) -> tuple[list[float], float]:
    """``clients`` clients at once, each from an address of its own (127.0.0.``first_address`` + k), asking back
    to back through ``ask`` until ``requests`` are answered: every answer's latency, and the wall time."""
    latencies: list[float] = []
    lock = threading.Lock()

    def one_client(k: int) -> None:
        with client_from(f"127.0.0.{first_address + k}") as client:
            for j in range(requests // clients):
                start = time.perf_counter()
                ask(base, photos[(k + j) % len(photos)], client=client)
                with lock:
                    latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one_client, range(clients)))
    return latencies, time.perf_counter() - start


BASELINE = "gradio:0:2"


def throughput_env(config: str) -> tuple[str, dict[str, str]]:
    """"path:batch:workers[:threads]" as the path and the app's environment."""
    path, batch, workers, *threads = config.split(":")
    if path not in ("gradio", "lean"):
        raise SystemExit(f"--configs: {config!r} must start with gradio: or lean:")
    return path, {"HUSKYAI_ENGINE_BATCH": batch, "HUSKYAI_WORKERS": workers,
                  "HUSKYAI_ENGINE_THREADS": threads[0] if threads else "0"}


def noise_photos(count: int = 20) -> list[bytes]:
    """The same ``count`` 640x480 noise JPEGs every run: what each mode sends."""
    from PIL import Image

    rng = np.random.default_rng(0)
    photos = []
    for _ in range(count):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype="uint8")).save(buf, "JPEG", quality=90)
        photos.append(buf.getvalue())
    return photos


def run_throughput(args: argparse.Namespace) -> int:
    """The unbatched gradio path (BASELINE) against each configuration in --configs, in alternating rounds on
    the same photos, each round a fresh app; the median of the rounds per configuration."""

    photos = noise_photos()
    configs = [BASELINE, *[c for c in args.configs.split(",") if c and c != BASELINE]]
    results: dict[str, list[dict]] = {c: [] for c in configs}
    print(f"load average at the start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    for r in range(args.rounds):
        for config in configs:
            path, env = throughput_env(config)
            res = throughput_round(photos, args.clients, args.requests, path, **env)
            results[config].append(res)
            print(f"round {r + 1} {config}: {res['rps']:.1f} req/s, p50 {res['p50']:.2f} s, p95 {res['p95']:.2f} s",
                  flush=True)
    print(f"load average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    base = {k: statistics.median(x[k] for x in results[BASELINE]) for k in ("rps", "p50", "p95")}
    print(f"\n{args.clients} clients, {args.requests} requests a round, median of {args.rounds} rounds "
          "(path:engine batch:workers[:engine threads]; the per-round ratio pairs each round with the baseline's):")
    print("| configuration | req/s | p50 s | p95 s | throughput vs baseline | p95 vs baseline | per round |")
    print("|---|---|---|---|---|---|---|")
    for config, rounds in results.items():
        m = {k: statistics.median(x[k] for x in rounds) for k in ("rps", "p50", "p95")}
        per_round = ", ".join(f"{x['rps'] / b['rps']:.2f}" for x, b in zip(rounds, results[BASELINE]))
        print(f"| {config} | {m['rps']:.1f} | {m['p50']:.2f} | {m['p95']:.2f} | {m['rps'] / base['rps']:.2f}x | "
              f"{m['p95'] / base['p95']:.2f}x | {per_round} |")
    return 0


# --- service -----------------------------------------------------------------------------------------------------

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
REDIS_SERVER, NGINX = "/usr/bin/redis-server", "/usr/sbin/nginx"
SERVICE_CONFIGS = {  # name: (how it is asked, the replicas' limits storage)
    "1 replica, direct, memory": ("direct", "memory"),
    "1 replica, nginx, memory": ("nginx", "memory"),
    "1 replica, direct, Redis": ("direct", "redis"),
    "2 replicas, nginx, Redis": ("nginx", "redis"),
}
SERVICE_BASELINE = "1 replica, direct, memory"


def run_redis(work: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                             "no", "--dir", work], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, proc)
    return proc, port


def run_nginx(prefix: Path, first: int, second: int) -> tuple[subprocess.Popen, int]:
    """deploy/nginx.conf as shipped, in front of the replicas on ``first`` and ``second``, from the folder ``prefix``
    (readable by nginx's workers: they write request bodies there); its per-client request rate (20 a second)
    lifted, since the bench's few clients ask faster than a person."""
    port = free_port()
    prefix.mkdir(mode=0o755)
    prefix.chmod(0o755)
    text = (DEPLOY / "nginx.conf").read_text()
    for old, new in [("listen 8080;", f"listen 127.0.0.1:{port};"),
                     ("server 127.0.0.1:7860", f"server 127.0.0.1:{first}"),
                     ("server 127.0.0.1:7861", f"server 127.0.0.1:{second}"), ("rate=20r/s", "rate=10000r/s")]:
        assert old in text, f"deploy/nginx.conf has no {old!r}"
        text = text.replace(old, new)
    (prefix / "nginx.conf").write_text(text)
    (prefix / "nginx-client.conf").write_text((DEPLOY / "nginx-client.conf").read_text())
    proc = subprocess.Popen([NGINX, "-p", f"{prefix}/", "-e", "stderr", "-c", str(prefix / "nginx.conf"),
                             "-g", f"daemon off; pid {prefix}/nginx.pid;"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_listening(port, proc)
    return proc, port


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{proc.args[0]} is not listening on {port}")


def service_latency(bases: dict[str, str], photos: list[bytes], requests: int) -> dict[str, dict]:
    """One client per configuration, each asking back to back, the configurations taking turns request by request
    (so that every one meets the same moments of a shared machine): p50 and p95 for each."""
    times: dict[str, list[float]] = {name: [] for name in bases}
    clients = {name: client_from(f"127.0.0.{20 + i}") for i, name in enumerate(bases)}
    names = list(bases)
    for j in range(requests):
        for name in names[j % len(names):] + names[:j % len(names)]:
            t = time.perf_counter()
            lean_predict(bases[name], photos[j % len(photos)], client=clients[name])
            times[name].append(time.perf_counter() - t)
    for c in clients.values():
        c.close()
    return {name: {"p50": percentile(v, 0.5), "p95": percentile(v, 0.95)} for name, v in times.items()}


def service_throughput(base: str, photos: list[bytes], clients: int, requests: int, first_address: int) -> float:
    """``clients`` clients at once, each from an address of its own, asking back to back: answers a second."""
    latencies, wall = clients_at_once(base, photos, clients, requests, first_address, lean_predict)
    return len(latencies) / wall


def hop_cost(direct: str, proxied: str, requests: int = 600) -> dict[str, float]:
    """Median milliseconds of GET /livez (no model, no limits: the HTTP path alone), asked directly and through
    nginx in alternation, one client, keep-alive connections."""
    times: dict[str, list[float]] = {"direct": [], "nginx": []}
    with client_from("127.0.0.201") as c:
        for i in range(requests):
            for name, base in (("direct", direct), ("nginx", proxied)) if i % 2 else (("nginx", proxied),
                                                                                      ("direct", direct)):
                t = time.perf_counter()
                c.get(f"{base}livez").raise_for_status()
                times[name].append(time.perf_counter() - t)
    return {name: statistics.median(v) * 1000 for name, v in times.items()}


def limiter_cost(redis_url: str, checks: int = 2000) -> dict[str, float]:
    """Microseconds of one rate-limit check (the middleware's, on an event loop), in memory and in Redis."""
    import asyncio

    from huskyai.serve.limits.ratelimit import RateLimiter
    from huskyai.serve.limits.store import LimitsStore

    async def per_check(store: LimitsStore) -> float:
        limiter = RateLimiter(10**9, store, name="bench")
        for i in range(100):
            await limiter.acheck(f"warm{i}")
        t = time.perf_counter()
        for i in range(checks):
            await limiter.acheck(f"198.51.100.{i % 200}")
        return (time.perf_counter() - t) / checks * 1e6

    return {"memory": asyncio.run(per_check(LimitsStore())), "redis": asyncio.run(per_check(LimitsStore(redis_url)))}


def run_service(args: argparse.Namespace) -> int:
    """Three replicas (one with limits in memory, two in Redis), two nginx (one in front of the memory replica,
    one in front of both Redis replicas), a redis-server; every configuration asked in each round, in turn."""

    if not (Path(REDIS_SERVER).exists() and Path(NGINX).exists()):
        raise SystemExit("needs Debian's redis-server and nginx (apt-get install redis-server nginx)")
    photos = noise_photos()
    procs: list[subprocess.Popen] = []
    fronts = Path(tempfile.mkdtemp(prefix="huskyai-nginx-"))  # not inside the 700 work folder: nginx's workers
    fronts.chmod(0o755)
    with tempfile.TemporaryDirectory(prefix="huskyai-service-") as work:
        try:
            redis, redis_port = run_redis(work)
            procs.append(redis)
            redis_url = f"redis://127.0.0.1:{redis_port}"
            never_reached = {"HUSKYAI_RATE_LIMIT": "1000000", "HUSKYAI_MAX_IN_FLIGHT": "1000",
                             "HUSKYAI_TRUST_PROXY": "1"}
            replicas = {}
            for name, storage in (("memory", "memory://"), ("redis-a", redis_url), ("redis-b", redis_url)):
                folder = Path(work) / name
                folder.mkdir()
                proc, base, port = serve(str(folder), HUSKYAI_LIMITS_STORAGE=storage, HUSKYAI_REPLICA=name,
                                         **never_reached)
                procs.append(proc)
                replicas[name] = (base, port)
            front_memory, port_memory = run_nginx(fronts / "memory", replicas["memory"][1], replicas["memory"][1])
            front_redis, port_redis = run_nginx(fronts / "redis", replicas["redis-a"][1], replicas["redis-b"][1])
            procs += [front_memory, front_redis]
            bases = {"1 replica, direct, memory": replicas["memory"][0],
                     "1 replica, nginx, memory": f"http://127.0.0.1:{port_memory}/",
                     "1 replica, direct, Redis": replicas["redis-a"][0],
                     "2 replicas, nginx, Redis": f"http://127.0.0.1:{port_redis}/"}
            for base in bases.values():  # every replica's engine warmed, through every door
                for k in range(4):
                    lean_predict(base, photos[k], client=client_from("127.0.0.200"))
            print(f"load average at the start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
            results: dict[str, list[dict]] = {name: [] for name in SERVICE_CONFIGS}
            for r in range(args.rounds):
                latency = service_latency(bases, photos, args.requests // 4)
                for i, name in enumerate(SERVICE_CONFIGS):
                    res = latency[name] | {"rps": service_throughput(bases[name], photos, args.clients, args.requests,
                                                                    40 + 20 * i)}
                    results[name].append(res)
                    print(f"round {r + 1} {name}: p50 {res['p50'] * 1000:.1f} ms, p95 {res['p95'] * 1000:.1f} ms, "
                          f"{res['rps']:.1f} req/s ({args.clients} clients)", flush=True)
            checks = limiter_cost(redis_url)
            hop = hop_cost(bases["1 replica, direct, memory"], bases["1 replica, nginx, memory"])
            print(f"load average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
        finally:
            for proc in reversed(procs):
                stop(proc)
            shutil.rmtree(fronts, ignore_errors=True)
    return report_service(args, results, checks, hop)


def report_service(args: argparse.Namespace, results: dict[str, list[dict]], checks: dict[str, float],
                   hop_ms: dict[str, float]) -> int:
    base = results[SERVICE_BASELINE]
    print(f"\nlean route; a round: {args.requests // 4} requests from one client per configuration, the "
          f"configurations taking turns (latency), then {args.requests} from {args.clients} clients at once per "
          f"configuration (throughput); median of {args.rounds} rounds; ratios pair each round with the baseline's "
          f"({SERVICE_BASELINE})")
    print("| configuration | p50 ms | p95 ms | p50 vs baseline | req/s | throughput vs baseline | per round |")
    print("|---|---|---|---|---|---|---|")
    for name, rounds in results.items():
        m = {k: statistics.median(x[k] for x in rounds) for k in ("p50", "p95", "rps")}
        p50_ratio = statistics.median(x["p50"] / b["p50"] for x, b in zip(rounds, base))
        rps_ratio = statistics.median(x["rps"] / b["rps"] for x, b in zip(rounds, base))
        per_round = ", ".join(f"{x['rps'] / b['rps']:.2f}" for x, b in zip(rounds, base))
        print(f"| {name} | {m['p50'] * 1000:.1f} | {m['p95'] * 1000:.1f} | {p50_ratio:.2f}x | {m['rps']:.1f} | "
              f"{rps_ratio:.2f}x | {per_round} |")
    hop = statistics.median((x["p50"] - b["p50"]) * 1000 for x, b in zip(results["1 replica, nginx, memory"], base))
    redis = statistics.median((x["p50"] - b["p50"]) * 1000 for x, b in zip(results["1 replica, direct, Redis"], base))
    print(f"\nmedian answer, against the baseline: the proxy hop {hop:+.2f} ms, Redis-backed limits {redis:+.2f} ms")
    print(f"the HTTP path alone (GET /livez): {hop_ms['direct']:.2f} ms direct, {hop_ms['nginx']:.2f} ms through "
          f"nginx: the hop costs {hop_ms['nginx'] - hop_ms['direct']:.2f} ms")
    print(f"one rate-limit check: {checks['memory']:.0f} us in memory, {checks['redis']:.0f} us in Redis (a "
          "prediction makes three calls: its in-flight count, the window, the count's release)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["waves", "adversarial", "sustained", "throughput", "service"],
                        default="waves")
    parser.add_argument("--requests", type=int, default=200, help="waves: requests per wave")
    parser.add_argument("--clients", type=int, default=20, help="waves: clients per wave")
    parser.add_argument("--limit", type=int, default=8, help="waves: per-client requests a minute in the app")
    parser.add_argument("--waves", type=int, default=3, help="waves: identical waves, each from new addresses")
    parser.add_argument("--seconds", type=float, default=40, help="adversarial: seconds per phase")
    parser.add_argument("--pause", type=float, default=1.5, help="adversarial: an honest client's pause")
    parser.add_argument("--only", default="", choices=["", "bomber", "queue_flood", "upload_flood", "oversized"],
                        help="adversarial: one of the attacker's four threads only (default: all four)")
    parser.add_argument("--minutes", type=float, default=10, help="sustained: how long")
    parser.add_argument("--configs", default="gradio:8:8,gradio:8:8:1,lean:0:2,lean:8:8,lean:8:8:1",
                        help=f"throughput: path:engine batch:workers[:engine threads] to compare with {BASELINE} "
                        "(path: gradio or lean, the /api/v1/predict route)")
    parser.add_argument("--rounds", type=int, default=3, help="throughput: alternating rounds")
    args = parser.parse_args()
    modes = {"waves": run_waves, "adversarial": run_adversarial, "sustained": run_sustained,
             "throughput": run_throughput, "service": run_service}
    return modes[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
