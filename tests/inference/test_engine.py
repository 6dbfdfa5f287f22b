"""The fast engine: ONNX Runtime on the shipped graph, parity with torch, no torch when serving."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidProtobuf

from conftest import EXPORT, python_env, skimage_photo

MOOD_GRAPH = EXPORT.parent / "export-mood" / "mood.onnx"


@pytest.mark.slow  # imports torch and timm and builds the network: seconds
def test_onnx_matches_torch_on_varied_photos():
    """model.onnx ships in the export; it must be the very network model.safetensors holds: on photos, on noise,
    one by one and in batches."""
    import huskyai

    fast = huskyai.load(engine="onnx")
    reference = huskyai.load(engine="torch")
    assert fast.engine.name == "onnx" and reference.engine.name == "torch"
    rng = np.random.default_rng(3)
    photos = [skimage_photo(n) for n in ("chelsea", "coffee", "astronaut", "rocket")]
    photos += [rng.integers(0, 256, (300, 200, 3), dtype=np.uint8) for _ in range(4)]
    batch = np.stack([fast.preprocess(p) for p in photos])
    assert np.abs(fast.probabilities(batch) - reference.probabilities(batch)).max() < 1e-4
    noise = rng.normal(0, 1, (3, 3, fast.size, fast.size)).astype(np.float32)  # any input, not only photos
    assert np.abs(fast.probabilities(noise) - reference.probabilities(noise)).max() < 1e-4
    singles = [fast.predict(p).positive_probability for p in photos]
    batched = [p.positive_probability for p in fast.predict_batch(photos, batch_size=3)]
    assert np.allclose(singles, batched, atol=1e-5)


def test_warm_serving_path_imports_no_torch_and_no_fastai():
    """The app's two models answering in a fresh process: the husky model and the mood model (its reasons
    included) import neither torch, fastai and timm nor scikit-learn."""
    code = ("import sys, huskyai; from huskyai.mood import load; m = huskyai.load(); m.predict(sys.argv[1]); "
            "load().predict({'sleep_hours': 9}); "
            "print(sorted({k.split('.')[0] for k in sys.modules} & {'torch', 'fastai', 'timm', 'sklearn'}))")
    out = subprocess.run([sys.executable, "-c", code, str(EXPORT / "confusion_matrix.png")], capture_output=True,
                         text=True, env=python_env(), timeout=300, check=True).stdout
    assert out.strip() == "[]"


def test_the_export_size_stays_under_60_mb():
    assert sum(p.stat().st_size for p in EXPORT.iterdir()) < 60e6


def test_every_session_option_gives_the_same_probabilities():
    """The batch-1 session (shapes fixed, padding folded) and every option bench/engine_options.py measures
    answer as the dynamic graph does, for one photo, a batch and an empty batch."""
    from dataclasses import replace

    from huskyai.inference.engine import OnnxEngine, OnnxOptions

    graph = (EXPORT / "model.onnx").read_bytes()
    batch = np.random.default_rng(7).normal(0, 1, (3, 3, 288, 288)).astype(np.float32)
    reference = OnnxEngine(graph, options=OnnxOptions(fixed_batch=False))(batch)
    base = OnnxOptions()
    for options in (base, replace(base, level="basic"), replace(base, threads=1, spinning=False),
                    replace(base, arena=False), replace(base, parallel=True, inter_threads=2)):
        engine = OnnxEngine(graph, options=options)
        assert np.abs(engine(batch) - reference).max() < 1e-5, options
        assert np.abs(engine(batch[1:2]) - reference[1:2]).max() < 1e-5, options
    assert engine(batch[:0]).shape == (0, 2)


# ---- the second wall: how every session is made (behind huskyai.trust.graphpolicy) ------------------------

def _graph_reading(location: str) -> bytes:
    """A graph whose output is the first 4 bytes of the file ``location`` (ONNX external data)."""
    from onnx import TensorProto, helper

    leak = TensorProto(name="leak", data_type=TensorProto.UINT8, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", "4")):
        entry = leak.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Cast", ["leak"], ["y"], to=TensorProto.FLOAT)], "leak",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [leak])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_every_session_refuses_external_data_even_where_the_working_folder_holds_it(tmp_path, monkeypatch):
    """Were a graph with external data ever to get past the policy, the sessions Husky AI makes would not
    read the file that plain ONNX Runtime reads from the working folder."""
    from huskyai.inference.engine import OnnxEngine, OnnxOptions, ort_session

    (tmp_path / "secret.key").write_bytes(b"KEY!")
    monkeypatch.chdir(tmp_path)
    graph = _graph_reading("secret.key")
    bare = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    assert bytes(bare.run(None, {"x": np.zeros(1, np.float32)})[0].astype(np.uint8)) == b"KEY!"
    for make in (lambda: ort_session(graph), lambda: OnnxEngine(graph, options=OnnxOptions(fixed_batch=False))):
        with pytest.raises(Fail, match="External data path validation failed"):
            make()


def test_every_session_refuses_onnx_runtimes_own_format(tmp_path):
    """ONNX Runtime loads its flatbuffer format when it recognises the bytes; ours parse only ONNX, as the
    graph policy does."""
    from huskyai.inference.engine import ort_session

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "mood.ort")
    options.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(MOOD_GRAPH), options, providers=["CPUExecutionProvider"])
    flatbuffer = (tmp_path / "mood.ort").read_bytes()
    assert ort.InferenceSession(flatbuffer, providers=["CPUExecutionProvider"]).get_inputs()[0].name == "x"
    with pytest.raises(InvalidProtobuf, match="protobuf parsing failed"):
        ort_session(flatbuffer)
    assert ort_session(MOOD_GRAPH.read_bytes()).get_inputs()[0].name == "x"
