"""The heatmap bomb: a small, compressible 16384x2300 PNG passes decoding within the decoder's budget, and its
heatmap, asked as the app's /explain handler asks it (huskyai.audit.audited_explain, one audit line), must stay
within that budget too, with an overlay of bounded size. Run in a fresh process whose peak RSS growth is measured
(Linux: /proc/self/clear_refs resets the peak), and whose numpy allocations tracemalloc counts."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from PIL import Image

from conftest import ROOT, python_env
from huskyai.explain.explanation import DISPLAY_SIDE
from huskyai.images.limits import MAX_SIDE

BUDGET_MB = 400  # the decoder's: every file bench/decode.py knows is answered within it
NUMPY_MB = 64  # arrays derived from the photo stay at the network's input or the overlay's size

ATTACK = """
import json, sys, time, tracemalloc
from pathlib import Path
import huskyai
from huskyai.audit import AuditLog, audited_explain

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024

model = huskyai.load()
method, data, tmp = sys.argv[1], Path(sys.argv[2]).read_bytes(), Path(sys.argv[3])
audit = AuditLog(tmp / "audit.jsonl")

def explained(data, name, client):
    return audited_explain(model, data, name=name, source="app-explain", client=client, log=audit, method=method)

explained(Path({photo!r}).read_bytes(), "warm.jpg", "warm-up")  # builds Grad-CAM
Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
before = status("VmRSS")
tracemalloc.start()
cpu = time.process_time()
made = explained(data, "wide.png", "attacker")
used = made.method
cpu = time.process_time() - cpu
numpy_peak = tracemalloc.get_traced_memory()[1] / 2**20
tracemalloc.stop()
extra = status("VmHWM") - before
print(json.dumps(dict(extra_mb=extra, numpy_mb=numpy_peak, cpu=cpu, method=used,
                      overlay=list(made.overlay.size), heatmap=list(made.heatmap.shape), size=model.size,
                      crop_box=list(made.crop_box), overlay_box=list(made.overlay_box))))
"""


def wide_png() -> bytes:
    """16384x2300 grey: 42 KB of PNG, 38 megapixels decoded (the decoder accepts it)."""
    buf = io.BytesIO()
    Image.new("L", (MAX_SIDE, 2300), 128).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.slow  # loads the model in a child process and makes two heatmaps
@pytest.mark.parametrize("method", ["occlusion", "grad-cam"])
def test_a_panorama_png_explained_through_the_app_stays_within_the_decoders_budget(method, tmp_path):
    if method == "grad-cam":
        pytest.importorskip("torch")
        pytest.importorskip("pytorch_grad_cam")
    data = wide_png()
    assert len(data) < 100_000
    (tmp_path / "wide.png").write_bytes(data)
    code = ATTACK.format(photo=str(ROOT / "examples" / "chelsea.jpg"))
    out = subprocess.run([sys.executable, "-c", code, method, str(tmp_path / "wide.png"), str(tmp_path)],
                         capture_output=True, text=True, env=python_env(), timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.splitlines()[-1])
    assert r["method"] == method
    assert r["extra_mb"] < BUDGET_MB, r  # the photo-size float32 map and overlay took 2.8 GB
    assert r["numpy_mb"] < NUMPY_MB, r  # a float32 map at the photo's size alone is 144 MB
    assert max(r["overlay"]) <= DISPLAY_SIDE, r  # the overlay the handler got, what the page shows
    assert r["overlay"] == [DISPLAY_SIDE, round(2300 * DISPLAY_SIDE / MAX_SIDE)], r
    assert r["heatmap"] == [r["size"], r["size"]], r  # the map is over the network's input, not the photo
    left, top, right, bottom = r["overlay_box"]  # the centre square, scaled with the photo
    assert (top, bottom) == (0, r["overlay"][1]) and abs((left + right) / 2 - DISPLAY_SIDE / 2) <= 1, r
    assert r["crop_box"] == [(MAX_SIDE - 2300) // 2, 0, (MAX_SIDE - 2300) // 2 + 2300, 2300], r
