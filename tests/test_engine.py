"""The fast engine: ONNX Runtime built from the verified weights, its cache, and parity with torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from conftest import EXPORT, python_env, skimage_photo


def test_onnx_matches_torch_on_varied_photos():
    import huskyai

    fast = huskyai.load(engine="onnx")
    reference = huskyai.load(engine="torch")
    assert fast.engine.name == "onnx" and reference.engine.name == "torch"
    rng = np.random.default_rng(3)
    photos = [skimage_photo(n) for n in ("chelsea", "coffee", "astronaut", "rocket")]
    photos += [rng.integers(0, 256, (300, 200, 3), dtype=np.uint8) for _ in range(4)]
    batch = np.stack([fast.preprocess(p) for p in photos])
    assert np.abs(fast.probabilities(batch) - reference.probabilities(batch)).max() < 1e-4
    singles = [fast.predict(p).probability for p in photos]
    batched = [p.probability for p in fast.predict_batch(photos, batch_size=3)]
    assert np.allclose(singles, batched, atol=1e-5)


def test_tampered_cache_is_rebuilt_not_used(tmp_path, monkeypatch):
    import huskyai
    from huskyai import engine

    monkeypatch.setenv("HUSKYAI_CACHE", str(tmp_path))
    model = huskyai.load(engine="onnx")
    expected = model.predict(skimage_photo("chelsea")).probability
    onnx_files = list(tmp_path.glob("*.onnx"))
    assert len(onnx_files) == 1
    sidecar = json.loads(onnx_files[0].with_suffix(".json").read_text())
    assert sidecar["weights_sha256"] == model.model_sha256
    # overwrite the cached graph with garbage: the next load must notice and rebuild
    onnx_files[0].write_bytes(b"not an onnx graph")
    again = huskyai.load(engine="onnx")
    assert abs(again.predict(skimage_photo("chelsea")).probability - expected) < 1e-6
    assert engine.sha256_of(onnx_files[0]) == sidecar["onnx_sha256"]


def test_warm_serving_path_imports_no_torch_and_no_fastai():
    import huskyai

    huskyai.load(engine="onnx")  # make sure the cache is warm
    code = ("import sys, huskyai; m = huskyai.load(); m.predict(sys.argv[1]); "
            "print(sorted({k.split('.')[0] for k in sys.modules} & {'torch', 'fastai', 'timm'}))")
    out = subprocess.run([sys.executable, "-c", code, str(EXPORT / "confusion_matrix.png")], capture_output=True,
                         text=True, env=python_env(), timeout=300, check=True).stdout
    assert out.strip() == "[]"


def test_auto_falls_back_to_torch_when_onnx_cannot_be_built(tmp_path, monkeypatch):
    import pytest

    import huskyai
    from huskyai import engine

    def no_exporter(*args, **kwargs):
        raise ImportError("No module named 'onnx'")

    monkeypatch.setenv("HUSKYAI_CACHE", str(tmp_path))
    monkeypatch.setattr(engine, "build_onnx", no_exporter)
    with pytest.warns(UserWarning, match="torch engine instead"):
        model = huskyai.load(engine="auto")
    assert model.engine.name == "torch" and model.predict(skimage_photo("coffee")).label == "not_husky"
    with pytest.raises(engine.EngineError, match="needs torch, timm and onnx"):
        huskyai.load(engine="onnx")
