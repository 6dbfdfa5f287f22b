"""Prediction speed, in one run on the shipped model: fastai's learn.predict against huskyai.

    python bench/predict.py

huskyai is measured in a child process of its own, as it serves: no torch or fastai in it (torch's
OpenMP threads keep spinning after learn.predict and would slow anything sharing the process).
This is a shared VM whose speed drifts by tens of percent within a minute, so the two sides are
measured in three alternating rounds and each reported figure is the median of its rounds.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from common import PHOTO, ROOT, median_ms, photos, rss_mb

CHILD = """
import json, sys
from common import PHOTO, median_ms, photos, rss_mb
import huskyai
model = huskyai.load()
batch = photos(32)
b = median_ms(lambda: model.predict(PHOTO), repeat=50, warmup=5)
pre = median_ms(lambda: model.preprocess(PHOTO), repeat=50)
c = median_ms(lambda: model.predict_batch(batch), repeat=7, warmup=1) / len(batch)
print(json.dumps(dict(b=b, pre=pre, c=c, rss=rss_mb(), engine=model.engine.name,
                      fastai='fastai' in sys.modules, torch='torch' in sys.modules)))
"""


def huskyai_round() -> dict:
    return json.loads(subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                                     cwd=ROOT / "bench", check=True).stdout)


def main() -> None:
    # huskyai first: once torch has run in this process, its idle threads compete for the 2 cores
    rounds = [huskyai_round()]
    import huskyai

    learn = huskyai.load_learner()  # the same fastai Learner a tutorial's load_learner gives, minus the pickle
    a_rounds = []
    for _ in range(3):
        with learn.no_bar():
            a_rounds.append(median_ms(lambda: learn.predict(PHOTO), repeat=30))
        if len(rounds) < 3:
            time.sleep(2)  # let torch's worker threads go idle before the child measures
            rounds.append(huskyai_round())
    baseline_rss = rss_mb()
    a = statistics.median(a_rounds)
    r = rounds[-1]
    b = statistics.median(x["b"] for x in rounds)
    c = statistics.median(x["c"] for x in rounds)
    r["pre"] = statistics.median(x["pre"] for x in rounds)
    print(f"photo: {PHOTO.name}; huskyai engine: {r['engine']}; predict_batch over {len(photos(32))} varied photos")
    print("rounds, ms: learn.predict " + " ".join(f"{x:.1f}" for x in a_rounds) + "; model.predict "
          + " ".join(f"{x['b']:.1f}" for x in rounds))
    print(f"(a) learn.predict, batch 1           {a:8.1f} ms")
    print(f"(b) model.predict, batch 1           {b:8.1f} ms   (of which preprocessing {r['pre']:.1f} ms)")
    print(f"(c) model.predict_batch(32)/image    {c:8.1f} ms")
    print(f"ratio b/a (target <= 0.3)            {b / a:8.2f}")
    print(f"ratio a/c (target >= 2.5)            {a / c:8.2f}   ({1000 / c:.0f} vs {1000 / a:.0f} images/s)")
    print(f"RSS, fastai process                  {baseline_rss:8.0f} MB")
    print(f"RSS, huskyai process                 {r['rss']:8.0f} MB   (fastai imported: {r['fastai']}, "
          f"torch imported: {r['torch']})")


if __name__ == "__main__":
    t = time.time()
    main()
    print(f"benchmark took {time.time() - t:.0f} s")
