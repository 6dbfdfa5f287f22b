"""What one explanation costs against one plain prediction, on the shipped model, in the same run.

    python bench/explain.py [--photos N]

Prints the median time of: a plain predict; an occlusion explanation (ONNX engine, 121 + 1 predictions at
288 px) with batches of 16 and of 1; a Grad-CAM explanation (torch), after its one-time network build, which
is timed on its own. Ratios are against the plain prediction: the machine is shared, absolute times are not.
"""

from __future__ import annotations

import argparse
import statistics
import time

import huskyai
from common import median_ms, photos
from huskyai.explain import explain
from huskyai.explain_occlusion import occlusion_map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=3)
    args = parser.parse_args()
    model = huskyai.load()
    files = photos(args.photos)
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


if __name__ == "__main__":
    main()
