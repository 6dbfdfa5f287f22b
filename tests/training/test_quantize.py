"""The INT8 export option (huskyai.training.quantize): calibration on training photos only, the second graph hashed and
described in the card, chosen with precision= or $HUSKYAI_PRECISION, and its parity with the fp32 graph."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import huskyai
from conftest import EXPORT, ROOT, SHARED_HUSKIES, python_env, skimage_photo
from huskyai.cli.main import main
from huskyai.errors import EngineError
from huskyai.training import quantize
from huskyai.trust import exports

PHOTOS = [skimage_photo(n) for n in ("chelsea", "coffee", "astronaut", "rocket")] + [ROOT / "examples" / "coffee.jpg"]


def _folder(root, counts: dict[str, int]):
    for label, n in counts.items():
        (root / label).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (40, 30), (i * 20 % 256, 100, 50)).save(root / label / f"{label[0]}{i:03d}.png")
    return root


def test_calibration_never_takes_a_held_out_photo(tmp_path):
    a = _folder(tmp_path / "a", {"husky": 5, "not_husky": 7})
    b = _folder(tmp_path / "b", {"husky": 3})
    (a / "husky" / "notes.txt").write_text("not a photo")
    held = ["a/husky/h000.png", "a/not_husky/n001.png", "b/husky/h002.png"]
    keys = [k for k, _ in quantize.training_photos([a, b], held)]
    assert len(keys) == 5 + 7 + 3 - 3 and not set(keys) & set(held) and "a/husky/notes.txt" not in keys
    card = {"training": {"holdout_files": held}}
    chosen = quantize.calibration_set([a, b], card, count=6)
    assert len(chosen.keys) == 6 and not set(chosen.keys) & set(held)
    assert quantize.calibration_set([a, b], card, count=6) == chosen  # the same photos every time
    assert quantize.calibration_set([a], {}, count=100).keys[0] == "husky/h000.png"  # one folder: no prefix
    fingerprint = chosen.fingerprint
    Image.new("RGB", (40, 30), "red").save(chosen.paths[0])
    assert chosen.fingerprint != fingerprint and len(fingerprint) == 64


def test_calibration_needs_photos(tmp_path):
    with pytest.raises(quantize.QuantizeError, match="no such photo folder"):
        quantize.calibration_set([tmp_path / "missing"], {})
    empty = _folder(tmp_path / "empty", {"husky": 0})
    with pytest.raises(quantize.QuantizeError, match="no training photos"):
        quantize.calibration_set([empty], {})


def test_the_shipped_model_serves_fp32_and_says_so_when_int8_is_missing(monkeypatch):
    model = huskyai.load()
    assert model.precision == "fp32" and "precision=fp32" in repr(model)
    assert "graphs" not in model.card  # the shipped export has one graph: INT8 missed its bound
    with pytest.raises(EngineError, match="no model.int8.onnx"):
        huskyai.load(precision="int8")
    with pytest.raises(EngineError, match="unknown precision 'fp16'"):
        huskyai.load(precision="fp16")
    with pytest.raises(EngineError, match="engine 'torch' is fp32 only"):
        huskyai.load(engine="torch", precision="int8")
    monkeypatch.setenv("HUSKYAI_PRECISION", "int8")
    with pytest.raises(EngineError, match="no model.int8.onnx"):
        huskyai.load()
    monkeypatch.setenv("HUSKYAI_PRECISION", "FP32")
    assert huskyai.load().precision == "fp32"


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    """A copy of the shipped export, signed with model.int8.onnx calibrated on 16 training photos (about 20 s)."""
    if not SHARED_HUSKIES.is_dir():
        pytest.skip("needs ../shared/data/huskies and huskies-web (training photos to calibrate on)")
    folder = tmp_path_factory.mktemp("int8") / "export"
    shutil.copytree(EXPORT, folder)
    # through the command line, as a user adds it (huskyai.cli.main.main, in this process)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["sign", str(folder), "--int8", str(SHARED_HUSKIES), str(SHARED_HUSKIES.parent / "huskies-web"),
                     "--int8-photos", "16"])
    assert code == 0 and "added model.int8.onnx" in out.getvalue(), out.getvalue()
    return folder


@pytest.mark.slow
def test_the_card_names_each_graph_and_the_calibration_set(int8_export):
    card = json.loads((int8_export / "model.json").read_text())
    shipped = json.loads((EXPORT / "model.json").read_text())
    graphs = card["graphs"]
    assert graphs["model.onnx"] == {"precision": "fp32"} and graphs["model.int8.onnx"]["precision"] == "int8"
    calibration = graphs["model.int8.onnx"]["calibration"]
    expected = quantize.calibration_set([SHARED_HUSKIES, SHARED_HUSKIES.parent / "huskies-web"], card, 16)
    assert calibration["photos"] == 16 and calibration["fingerprint"] == expected.fingerprint
    assert not set(expected.keys) & set(card["training"]["holdout_files"])
    assert card["files"]["model.int8.onnx"] == exports.sha256((int8_export / "model.int8.onnx").read_bytes())
    assert {k: v for k, v in card.items() if k not in ("graphs", "files", "signature")} == \
        {k: v for k, v in shipped.items() if k != "files"}  # nothing else in the card changed
    size = sum(p.stat().st_size for p in int8_export.iterdir())
    assert size < 60e6, size


@pytest.mark.slow
def test_int8_matches_fp32_and_fp32_matches_torch(int8_export):
    """On these clear-cut photos; on the held-out photos INT8 misses its 0.02 bound (bench/quantize.py), which is
    why fp32 stays the default and the shipped export has no INT8 graph."""
    fp32 = huskyai.load(int8_export)
    int8 = huskyai.load(int8_export, precision="int8")
    reference = huskyai.load(int8_export, engine="torch")
    assert (fp32.precision, int8.precision) == ("fp32", "int8") and "signed" in int8.trust
    from huskyai.serve.modelcard import model_card_markdown

    assert "**Serving graph:** int8 of fp32, int8; INT8 calibrated on 16 training photos" in model_card_markdown(int8)
    batch = np.stack([fp32.preprocess(p) for p in PHOTOS])
    p32, p8 = fp32.probabilities(batch), int8.probabilities(batch)
    assert np.abs(p32 - reference.probabilities(batch)).max() < 1e-4
    assert np.abs(p8 - p32).max() <= 0.02
    assert [int8.to_prediction(p).label for p in p8] == [fp32.to_prediction(p).label for p in p32]
    assert np.allclose(p8.sum(1), 1, atol=1e-5)  # the softmax stayed fp32


@pytest.mark.slow
def test_the_precision_setting_reaches_a_fresh_process(int8_export):
    code = "import sys, huskyai; m = huskyai.load(sys.argv[1]); print(m.precision, m.predict(sys.argv[2]).label)"
    proc = subprocess.run([sys.executable, "-c", code, str(int8_export), str(ROOT / "examples" / "coffee.jpg")],
                          capture_output=True, text=True, env=python_env() | {"HUSKYAI_PRECISION": "int8"},
                          timeout=300)
    assert proc.stdout.split() == ["int8", "not_husky"], proc.stderr


@pytest.mark.slow
def test_a_changed_int8_graph_is_refused(int8_export, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(int8_export, copy)
    data = bytearray((copy / "model.int8.onnx").read_bytes())
    data[-100] ^= 1
    (copy / "model.int8.onnx").write_bytes(bytes(data))
    with pytest.raises(huskyai.IntegrityError, match="model.int8.onnx: sha256"):
        huskyai.load(copy)  # even the fp32 default refuses an export with any changed file


def test_sign_with_a_missing_calibration_folder_is_one_line_and_changes_nothing(tmp_path, cli):
    folder = tmp_path / "export"
    shutil.copytree(EXPORT, folder)
    done = cli("sign", folder, "--int8", tmp_path / "none")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    missing = tmp_path / "none"
    assert done.stderr.strip() == f"error: {missing}: no such photo folder (expected one sub-folder per label)"
    assert (folder / "model.json").read_bytes() == (EXPORT / "model.json").read_bytes()
    assert not (folder / exports.INT8_ONNX_NAME).exists()
