"""Prediction speed, in one run on the shipped model: fastai's learn.predict against huskyai, and the floor.

    python bench/predict.py [--rounds 3]

The floor is the network's FLOPs at the card's input size (bench/flops.py counts them from the ONNX
graph) over the float32 matmul rate numpy reaches on this machine, measured in the same run.
huskyai is measured in a child process of its own, as it serves: no torch or fastai in it (torch's
OpenMP threads keep spinning after learn.predict and would slow anything sharing the process); the
matmul rate is measured there too. This is a shared VM whose speed drifts by tens of percent within a
minute, so the two sides are measured in alternating rounds and each figure is the median of its rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from common import PHOTO, ROOT, median_ms, photos, rss_mb


def child(with_profile: bool) -> None:
    """One huskyai round (run in a fresh interpreter): prints its measurements as JSON."""
    import flops

    import huskyai

    model = huskyai.load()
    batch = photos(32)
    x = model.preprocess(PHOTO)[None]
    out = dict(b=median_ms(lambda: model.predict(PHOTO), repeat=50, warmup=5),
               pre=median_ms(lambda: model.preprocess(PHOTO), repeat=50),
               engine=median_ms(lambda: model.probabilities(x), repeat=50),
               c=median_ms(lambda: model.predict_batch(batch), repeat=5, warmup=1) / len(batch),
               gflops=flops.matmul_gflops(), rss=rss_mb(), engine_name=model.engine.name,
               heavy=sorted({k.split(".")[0] for k in sys.modules} & {"torch", "fastai", "timm"}))
    if with_profile:
        graph = (model.export_dir / "model.onnx").read_bytes()
        out["floor"] = flops.floor_report(graph, model.size)
    print(json.dumps(out))


def huskyai_round(with_profile: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child"] + (["--profile"] if with_profile else [])
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT / "bench", check=True).stdout)


def measure(rounds: int) -> tuple[list[float], list[dict], float]:
    """learn.predict ms per round (parent), huskyai rounds (children, the first profiled), fastai's RSS."""
    children = [huskyai_round(with_profile=True)]  # first: once torch has run here its idle threads compete
    import huskyai

    learn = huskyai.load_learner()  # the same fastai Learner a tutorial's load_learner gives, minus the pickle
    fastai = []
    for _ in range(rounds):
        with learn.no_bar():
            fastai.append(median_ms(lambda: learn.predict(PHOTO), repeat=30))
        if len(children) < rounds:
            time.sleep(2)  # let torch's worker threads go idle before the child measures
            children.append(huskyai_round())
    return fastai, children, rss_mb()


def report(fastai: list[float], children: list[dict], fastai_rss: float) -> None:
    import flops

    def med(key: str) -> float:
        return statistics.median(r[key] for r in children)

    floor_info, last = children[0]["floor"], children[-1]
    a, gflops = statistics.median(fastai), med("gflops")
    floor_info["gflops"] = gflops  # the roofline and the profile's rates use the median of the rounds too
    net_flops = floor_info["flops"]["total"]
    floor = net_flops / (gflops * 1e9) * 1000
    print(f"photo: {PHOTO.name}; huskyai engine: {last['engine_name']}; predict_batch over 32 varied photos; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"network: {net_flops / 1e9:.3f} GFLOP a photo at the card's input size (Conv and Gemm multiply-adds x 2, "
          "from ONNX Runtime's profile of the unoptimised graph)")
    print("matmul: " + " ".join(f"{r['gflops']:.0f}" for r in children) + f" GFLOP/s in the rounds (numpy float32, "
          f"best of 1024-2048 squares); copying 8 MB {floor_info['cache_gbs']:.1f} GB/s, 64 MB "
          f"{floor_info['copy_gbs']:.1f} GB/s (read + write)")
    print(f"floor: {floor:.1f} ms a photo ({net_flops / 1e9:.3f} GFLOP / {gflops:.0f} GFLOP/s); counting memory "
          f"traffic too (roofline): {flops.roofline_ms(floor_info):.1f} ms")
    print("rounds, ms: learn.predict " + " ".join(f"{x:.1f}" for x in fastai) + "; model.predict "
          + " ".join(f"{r['b']:.1f}" for r in children))
    print(f"{'path':34s} {'ms/photo':>9s} {'x floor':>8s} {'x learn.predict':>16s}")
    rows = [("(a) learn.predict", a), ("(b) model.predict", med("b")), ("    of which preprocessing", med("pre")),
            ("    of which the engine (batch 1)", med("engine")), ("(c) model.predict_batch(32), a photo", med("c"))]
    for name, ms in rows:
        print(f"{name:34s} {ms:9.1f} {ms / floor:8.1f} {ms / a:16.2f}")
    b, c = med("b"), med("c")
    print(f"must: model.predict <= 0.25x learn.predict: {b / a:.2f}x -> {'met' if b / a <= 0.25 else 'NOT met'}")
    print(f"must: predict_batch >= 4x learn.predict's throughput: {a / c:.1f}x ({1000 / c:.0f} against "
          f"{1000 / a:.0f} photos/s) -> {'met' if a / c >= 4 else 'NOT met'}")
    print(f"within 2x of the floor: engine {med('engine') / floor:.1f}x, model.predict {b / floor:.1f}x; "
          "where the engine's time goes (ONNX Runtime's profile, batch 1, as served):")
    print("\n".join("  " + line for line in flops.format_profile(floor_info)))
    print(f"RSS: fastai process {fastai_rss:.0f} MB; huskyai process {last['rss']:.0f} MB "
          f"(torch, fastai or timm imported there: {last['heavy'] or 'none'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.profile)
        return
    t = time.time()
    report(*measure(args.rounds))
    print(f"benchmark took {time.time() - t:.0f} s")


if __name__ == "__main__":
    main()
