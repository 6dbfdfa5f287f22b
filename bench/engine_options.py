"""ONNX Runtime's session options on the shipped graph, measured side by side in one run:

    python bench/engine_options.py [--rounds 3]

Each configuration (huskyai.inference.engine.OnnxOptions) is one session; in every round each one is timed in
turn, so drift on this shared VM falls on all alike; each figure is the median of its rounds. Four
measures: one request (batch 1, ms), a batch of 4 in one call (ms a photo: the app's engine queue
sends up to 4), two requests at once from two threads (ms a photo: the wall time over the photos),
and model.predict_batch over 16 photo files (ms a photo: decoding runs in a thread beside the engine);
and the best single request of all rounds, which is what a quiet machine would show.
The first row is repeated at the end: the gap between the two is the run-to-run noise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from dataclasses import replace

import numpy as np

import huskyai
from common import ROOT, photos
from huskyai.inference.engine import OnnxEngine, OnnxOptions

BASE = OnnxOptions()
CONFIGS = {
    "defaults": BASE,
    "dynamic batch axis": replace(BASE, fixed_batch=False),
    "level basic": replace(BASE, level="basic"),
    "level extended": replace(BASE, level="extended"),
    "1 intra-op thread": replace(BASE, threads=1),
    "ONNX Runtime's defaults": replace(BASE, spinning=True, fixed_batch=False),
    "spinning": replace(BASE, spinning=True),
    "1 thread, spinning": replace(BASE, threads=1, spinning=True),
    "no memory arena": replace(BASE, arena=False),
    "parallel, 2 inter-op": replace(BASE, parallel=True, inter_threads=2),
    "defaults again (noise)": BASE,
}


def timed_ms(fn, repeat: int, per: int = 1) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000 / per)
    return times


def two_at_once(engine: OnnxEngine, x: np.ndarray, each: int) -> float:
    """ms a photo when two threads each run ``each`` single-photo calls at the same time."""
    def work():
        for _ in range(each):
            engine(x)

    threads = [threading.Thread(target=work) for _ in range(2)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return (time.perf_counter() - t) * 1000 / (2 * each)


def measure(engine: OnnxEngine, x4: np.ndarray, model, files: list) -> tuple[float, ...]:
    ones = timed_ms(lambda: engine(x4[:1]), repeat=12)
    batch = statistics.median(timed_ms(lambda: engine(x4), repeat=3, per=len(x4)))
    model.engine = engine  # the verified model's own engine, swapped for this configuration's
    many = timed_ms(lambda: model.predict_batch(files), repeat=1, per=len(files))[0]
    return statistics.median(ones), batch, two_at_once(engine, x4[:1], each=6), many, min(ones)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    graph = (ROOT / "export" / "model.onnx").read_bytes()
    engines = {name: OnnxEngine(graph, options=opts) for name, opts in CONFIGS.items()}
    model, files = huskyai.load(), photos(16)
    size = engines["defaults"].session.get_inputs()[0].shape[2]
    x4 = np.random.default_rng(0).normal(0, 1, (4, 3, size, size)).astype(np.float32)
    results: dict[str, list[tuple[float, ...]]] = {name: [] for name in engines}
    for r in range(args.rounds):
        order = list(engines)[r % len(engines):] + list(engines)[:r % len(engines)]  # rotate the order
        for name in order:
            results[name].append(measure(engines[name], x4, model, files))
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at the end; {args.rounds} rounds; "
          f"input {size} px; medians of rounds (ratio to the defaults)")
    print(f"{'configuration':26s} {'1 request ms':>16s} {'batch 4, ms/photo':>18s} {'2 at once, ms/photo':>20s} "
          f"{'predict_batch ms/photo':>23s} {'best 1 request':>16s}")
    base = [statistics.median(m[i] for m in results["defaults"]) for i in range(4)]
    base.append(min(m[4] for m in results["defaults"]))
    for name, rounds in results.items():
        cells = []
        for i in range(5):
            values = [m[i] for m in rounds]
            med = statistics.median(values) if i < 4 else min(values)
            cells.append(f"{med:6.1f} ({med / base[i]:4.2f}x)")
        print(f"{name:26s} {cells[0]:>16s} {cells[1]:>18s} {cells[2]:>20s} {cells[3]:>23s} {cells[4]:>16s}")
    spread = [max(m[i] for m in results["defaults"]) / min(m[i] for m in results["defaults"]) - 1 for i in range(4)]
    print("round-to-round spread of the defaults: " + ", ".join(f"{s:.0%}" for s in spread))


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"benchmark took {time.time() - t0:.0f} s")
