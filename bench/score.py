"""Photos per second of batch scoring: model.predict_batch, the local process pool and local Ray, on the
same generated photos, in one run, for 1 and 2 workers.

    python bench/score.py [--photos 200] [--workers 1 2] [--repeat 2] [--no-ray]

"end to end" is what `huskyai score` takes from its start to the written parquet file (workers' start
and model loading included; for Ray, actor start too, but not ray.init, shown apart); "warm" is the
pool's rate once its workers hold their models. Each rate is the best of --repeat runs, interleaved
across the paths; ratios are to predict_batch in the same run (the machine is shared: compare ratios).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from PIL import Image

import huskyai
from huskyai.evaluation.pool import LocalPool
from huskyai.evaluation.score import score


def make_photos(folder: Path, n: int) -> list[Path]:
    """Photo-sized JPEGs (500x375 and 375x500, like the dataset's): gradients, blobs and mild noise."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        h, w = (375, 500) if i % 3 else (500, 375)
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([np.sin(x / rng.uniform(20, 120) + c) * np.cos(y / rng.uniform(20, 120)) for c in range(3)], -1)
        img = (base * 90 + 128 + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
        path = folder / f"photo{i:04d}.jpg"
        Image.fromarray(img).save(path, quality=88)
        paths.append(path)
    return paths


def timed(run: Callable[[], object]) -> float:
    t = time.perf_counter()
    run()
    return time.perf_counter() - t


def end_to_end(folder: Path, work: Path, model, **kwargs) -> Callable[[], object]:
    def run() -> object:
        out = work / "results.parquet"
        out.unlink(missing_ok=True)  # a fresh file each run: nothing to resume
        return score(folder, out, model, progress=False, **kwargs)
    return run


def warm_pool(stack: ExitStack, model, paths: list[str], workers: int) -> Callable[[], object]:
    pool = stack.enter_context(LocalPool(model, workers))
    pool.warm_up()
    return lambda: [r for chunk in pool.map(paths) for r in chunk]


def start_ray(stack: ExitStack) -> None:
    import ray

    t = time.perf_counter()
    ray.init(include_dashboard=False, logging_level="warning")
    stack.callback(ray.shutdown)
    print(f"ray.init: {time.perf_counter() - t:.1f} s (not counted below)")


def measure(args: argparse.Namespace, folder: Path, work: Path, stack: ExitStack) -> dict[tuple, float]:
    """Best seconds of each (path, workers, column); the runs are interleaved, so that a change in the
    machine's load hits every path alike."""
    paths = [str(p) for p in sorted(folder.iterdir())]
    model = huskyai.load()
    model.predict_batch(paths[:4])  # the engine's first run is the slow one
    runs: dict[tuple, Callable[[], object]] = {("predict_batch (one process)", "-", "warm"):
                                               lambda: model.predict_batch(paths)}
    for w in args.workers:
        runs["local pool", w, "end to end"] = end_to_end(folder, work, model, workers=w)
        runs["local pool", w, "warm"] = warm_pool(stack, model, paths, w)
    if not args.no_ray:
        start_ray(stack)
        for w in args.workers:
            runs["Ray Data actors", w, "end to end"] = end_to_end(folder, work, model, workers=w, use_ray=True)
    best: dict[tuple, float] = {}
    for _ in range(args.repeat):
        for key, run in runs.items():
            best[key] = min(best.get(key, float("inf")), timed(run))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start")
    with tempfile.TemporaryDirectory(prefix="huskyai-bench-score-") as tmp, ExitStack() as stack:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        make_photos(folder, args.photos)
        best = measure(args, folder, Path(tmp), stack)
    rate = {key: args.photos / seconds for key, seconds in best.items()}
    base = rate["predict_batch (one process)", "-", "warm"]
    print(f"\n{args.photos} photos, best of {args.repeat} interleaved runs; ratio = photos/s over predict_batch's\n")
    print(f"{'path':<28} {'workers':>7} {'end to end':>18} {'warm':>18}")
    for name, w in dict.fromkeys(key[:2] for key in rate):
        cells = [f"{r:6.1f}/s ({r / base:4.2f}x)" if (r := rate.get((name, w, column))) else ""
                 for column in ("end to end", "warm")]
        print(f"{name:<28} {w!s:>7} {cells[0]:>18} {cells[1]:>18}")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
