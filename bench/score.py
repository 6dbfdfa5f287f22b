"""Photos per second of batch scoring: model.predict_batch, the local process pool and local Ray, on the
same generated photos, in one run, for 1 and 2 workers.

    python bench/score.py [--photos 200] [--workers 1 2] [--repeat 2] [--no-ray]

"end to end" is what `huskyai score` takes from its start to the written parquet file (workers' start
and model loading included; for Ray, actor start too, but not ray.init, shown apart); "warm" is the
pool's rate once its workers hold their models. Each rate is the best of --repeat runs; ratios are to
predict_batch in the same run (the machine is shared: compare ratios, not rates).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

import huskyai
from huskyai.scoring import score
from huskyai.scoring_pool import LocalPool


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


def best_rate(n: int, run: Callable[[], object], repeat: int) -> float:
    """Photos per second of the fastest of ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return n / min(times)


def end_to_end(folder: Path, work: Path, model, **kwargs) -> Callable[[], object]:
    def run() -> object:
        out = work / "results.parquet"
        out.unlink(missing_ok=True)  # a fresh file each run: nothing to resume
        return score(folder, out, model, progress=False, **kwargs)
    return run


def warm_pool_rate(model, paths: list[str], workers: int, repeat: int) -> float:
    with LocalPool(model, workers) as pool:
        pool.warm_up()
        return best_rate(len(paths), lambda: [r for chunk in pool.map(paths) for r in chunk], repeat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start")
    with tempfile.TemporaryDirectory(prefix="huskyai-bench-score-") as tmp:
        folder, work = Path(tmp) / "photos", Path(tmp)
        folder.mkdir()
        paths = [str(p) for p in make_photos(folder, args.photos)]
        model = huskyai.load()
        model.predict_batch(paths[:4])  # the engine's first run is the slow one
        base = best_rate(len(paths), lambda: model.predict_batch(paths), args.repeat)
        rows = [("predict_batch (one process)", "-", None, base)]
        for w in args.workers:
            e2e = best_rate(len(paths), end_to_end(folder, work, model, workers=w), args.repeat)
            rows.append(("local pool", w, e2e, warm_pool_rate(model, paths, w, args.repeat)))
        if not args.no_ray:
            import ray

            t = time.perf_counter()
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="warning")
            print(f"ray.init: {time.perf_counter() - t:.1f} s (not counted below)")
            for w in args.workers:
                run = end_to_end(folder, work, model, workers=w, use_ray=True)
                rows.append(("Ray Data actors", w, best_rate(len(paths), run, args.repeat), None))
            ray.shutdown()
    print(f"\n{args.photos} photos, best of {args.repeat} runs; ratio = photos/s over predict_batch's\n")
    print(f"{'path':<28} {'workers':>7} {'end to end':>18} {'warm':>18}")
    for name, w, e2e, warm in rows:
        cells = [f"{r:6.1f}/s ({r / base:4.2f}x)" if r else "" for r in (e2e, warm)]
        print(f"{name:<28} {w!s:>7} {cells[0]:>18} {cells[1]:>18}")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
