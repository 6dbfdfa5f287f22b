"""What a heatmap costs next to the prediction it explains: time and peak memory, side by side, on every file
bench/decode.py knows, and the time of one explanation against one plain prediction.

    python bench/explain.py [--only SUBSTRING] [--methods occlusion,grad-cam] [--limit-mb 400]
    python bench/explain.py --ratios [--photos N]

Every case runs in a fresh child process that loads the shipped model and warms it up on a small photo
(a prediction, then one heatmap per method, which builds Grad-CAM's torch network once). Then, for the
case's bytes: a plain ``model.predict``, then ``huskyai.explain.explanation.explain`` with each method. Before each,
freed heap memory is handed back to the system (glibc's malloc_trim) and the peak-RSS counter is reset
(/proc/self/clear_refs), so each column's peak is the extra RSS that one call needed over what was live
before it. The first case, a 12 MP phone-style photo, is the baseline. A refused file is refused by both.
The limit is the decoder's memory budget: anything derived from a photo must fit in it too.

``--ratios``: the median time of a plain predict; an occlusion explanation (ONNX engine, 121 + 1
predictions at 288 px) with batches of 16 and of 1; a Grad-CAM explanation (torch), after its one-time
network build, which is timed on its own. Ratios are against the plain prediction: the machine is shared,
absolute times are not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, median_ms, photos

MB = 1024 * 1024

CHILD = """
import ctypes, json, sys, time
from pathlib import Path
import huskyai
from huskyai.explain.explanation import explain
from huskyai.images import InvalidImageError
methods = [m for m in sys.argv[2].split(",") if m]
model = huskyai.load()
warm = str(Path({root!r}) / "examples" / "chelsea.jpg")
model.predict(warm)
for method in methods:
    explain(model, warm, method=method)
data = Path(sys.argv[1]).read_bytes()
libc = ctypes.CDLL("libc.so.6")

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024

def measure(call):
    libc.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = status("VmRSS")
    cpu0, t0 = time.process_time(), time.perf_counter()
    try:
        outcome = call()
    except InvalidImageError as err:
        outcome = "refused: " + str(err).removeprefix("case: ")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return dict(seconds=seconds, cpu=cpu, extra_mb=status("VmHWM") - before, outcome=outcome)

def predict():
    pred = model.predict(data, "case")
    return f"predicted {{pred.label}} {{pred.positive_probability:.3f}}"

def heatmap(method):
    def call():
        e = explain(model, data, "case", method=method)
        return f"map {{e.heatmap.shape[1]}}x{{e.heatmap.shape[0]}}, overlay {{e.overlay.width}}x{{e.overlay.height}}"
    return call

out = dict(predict=measure(predict))
for method in methods:
    out[method] = measure(heatmap(method))
print(json.dumps(out))
"""


def run_case(path: Path, methods: list[str]) -> dict:
    """The case's measurements (predict, then each method) from a fresh child process."""
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), str(path), ",".join(methods)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        crash = dict(seconds=float("nan"), cpu=float("nan"), extra_mb=float("nan"),
                     outcome="CRASH: " + (out.stderr.strip().splitlines() or ["?"])[-1])
        return {name: crash for name in ["predict", *methods]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def budget(args: argparse.Namespace) -> int:
    """The side-by-side table over bench/decode.py's cases; 1 if any call went over the limit or crashed."""
    from decode import cases

    methods = [m for m in args.methods.split(",") if m]
    chosen = [c for i, c in enumerate(cases()) if i == 0 or args.only.lower() in c[0].lower()]
    columns = ["predict", *methods]
    print(f"{'case':44} {'KB':>6}  " + "  ".join(f"{c[:9]:>9} {'cpu s':>5} {'MB':>5}" for c in columns)
          + "  outcome")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, build) in enumerate(chosen):
            path = Path(tmp) / f"case{i}"
            data = build()
            path.write_bytes(data)
            r = run_case(path, methods)
            over = [c for c in columns if not r[c]["extra_mb"] <= args.limit_mb or r[c]["outcome"].startswith("CRASH")]
            failures += bool(over)
            cells = "  ".join(f"{r[c]['seconds']:7.2f} s {r[c]['cpu']:5.2f} {r[c]['extra_mb']:5.0f}" for c in columns)
            told = r["predict"]["outcome"]
            if not told.startswith("refused"):
                told += "; " + r[columns[-1]]["outcome"]
            flag = f"OVER LIMIT ({', '.join(over)}) " if over else ""
            print(f"{name[:44]:44} {len(data) / 1024:6.0f}  {cells}  {flag}{told[:100]}", flush=True)
    print(f"\n{len(chosen)} cases, each call's peak extra RSS against {args.limit_mb:g} MB: "
          f"{'all within' if not failures else f'{failures} cases over'}")
    return 1 if failures else 0


def ratios(n_photos: int) -> None:
    """Median times of one explanation against one plain prediction, on ordinary photos, in this process."""
    import huskyai
    from huskyai.explain.explanation import explain
    from huskyai.explain.occlusion import occlusion_map

    model = huskyai.load()
    files = photos(n_photos)
    x = model.preprocess(files[0])
    predict = statistics.median(median_ms(lambda f=f: model.predict(f), repeat=10) for f in files)
    started = time.perf_counter()
    explain(model, files[0], method="grad-cam")
    first_grad_cam = (time.perf_counter() - started) * 1000
    results = {
        "occlusion explain (batch 16)": statistics.median(
            median_ms(lambda f=f: explain(model, f, method="occlusion"), repeat=2, warmup=1) for f in files),
        "occlusion map only, batch 1": median_ms(lambda: occlusion_map(model, x, batch_size=1), repeat=2, warmup=0),
        "occlusion map only, batch 16": median_ms(lambda: occlusion_map(model, x), repeat=2, warmup=0),
        "grad-cam explain": statistics.median(
            median_ms(lambda f=f: explain(model, f, method="grad-cam"), repeat=3, warmup=1) for f in files),
        "grad-cam first call (builds the torch network)": first_grad_cam,
    }
    print(f"plain predict: {predict:.1f} ms ({len(files)} photos, {model.size} px)")
    for name, ms in results.items():
        print(f"{name}: {ms:.0f} ms = {ms / predict:.0f}x a plain prediction")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run only cases whose name contains this (and the baseline)")
    parser.add_argument("--methods", default="occlusion,grad-cam", help="heatmap methods, comma-separated")
    parser.add_argument("--limit-mb", type=float, default=400.0)
    parser.add_argument("--ratios", action="store_true", help="instead: time explanations against predictions")
    parser.add_argument("--photos", type=int, default=3, help="with --ratios: how many photos")
    args = parser.parse_args()
    if args.ratios:
        ratios(args.photos)
        return 0
    return budget(args)


if __name__ == "__main__":
    sys.exit(main())
