"""The command line, run as users run it: python -m huskyai ..."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, bad_files, jpeg_bytes, make_toy_dataset, python_env, skimage_photo

pytestmark = pytest.mark.slow  # trains the toy model and runs the CLI as subprocesses


def run(*args: str, check_code: int | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "huskyai", *args], capture_output=True, text=True,
                          env=python_env(), cwd=ROOT, timeout=600)
    if check_code is not None:
        assert proc.returncode == check_code, proc.stdout + proc.stderr
    return proc


def test_predict_json_and_exit_codes(tmp_path, toy_export):
    cat = tmp_path / "cat.jpg"
    cat.write_bytes(jpeg_bytes(skimage_photo("chelsea")))
    out = json.loads(run("predict", str(cat), "--json", "--model", str(toy_export), check_code=0).stdout)
    assert out[0]["label"] == "husky" and 0.5 < out[0]["probability"] <= 1
    assert set(out[0]["scores"]) == {"husky", "not_husky"}

    bad = tmp_path / "text.jpg"
    bad.write_bytes(bad_files()["text.jpg"])
    proc = run("predict", str(cat), str(bad), "--model", str(toy_export), check_code=1)
    assert "text.jpg: not a supported image" in proc.stderr
    assert "cat.jpg\thusky" in proc.stdout  # the good file is still answered
    assert "Traceback" not in proc.stderr

    proc = run("predict", str(tmp_path / "missing.jpg"), "--model", str(toy_export), check_code=1)
    assert "cannot read file" in proc.stderr


def test_evaluate_json(tmp_path, toy_export):
    data = make_toy_dataset(tmp_path / "eval", n_per_class=3, size=80)
    (data / "husky" / "broken.jpg").write_bytes(bad_files()["truncated.jpg"])
    sheet = tmp_path / "errors.png"
    proc = run("evaluate", str(data), "--json", "--model", str(toy_export), "--sheet", str(sheet), check_code=0)
    result = json.loads(proc.stdout)
    if not result["errors"]:  # a perfect score draws no blank sheet, and says so
        assert not sheet.exists() and "no misclassified photos" in proc.stderr
    assert result["n"] == 6
    for key in ("accuracy", "precision", "recall", "f1"):
        assert 0 <= result[key] <= 1
    assert set(result["confusion"]) == {"tp", "fp", "tn", "fn"} and sum(result["confusion"].values()) == 6
    assert result["accuracy"] == (result["confusion"]["tp"] + result["confusion"]["tn"]) / 6
    assert len(result["errors"]) == result["confusion"]["fp"] + result["confusion"]["fn"]
    assert "broken.jpg" in proc.stderr
    # a cat crop filed under not_husky is an error the sheet must show
    (data / "not_husky" / "planted.jpg").write_bytes((data / "husky" / "husky_00.jpg").read_bytes())
    proc = run("evaluate", str(data), "--json", "--model", str(toy_export), "--sheet", str(sheet), check_code=0)
    assert any(e["file"].endswith("planted.jpg") for e in json.loads(proc.stdout)["errors"])
    assert sheet.read_bytes()[:4] == b"\x89PNG" and "contact sheet of" in proc.stderr


def test_bad_model_folder_and_bad_data_exit_non_zero(tmp_path):
    proc = run("predict", "x.jpg", "--model", str(tmp_path), check_code=1)
    assert "no model card" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), check_code=1)
    assert "no such folder" in proc.stderr
    assert run("predict").returncode == 2  # usage error from argparse


def test_train_script_matches_cli(tmp_path):
    data = make_toy_dataset(tmp_path / "d", n_per_class=2, size=64)
    (data / "not_husky").rename(data / "other")
    proc = subprocess.run([sys.executable, "train.py", "--data", str(data), "--positive", "cat", "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, env=python_env(), cwd=ROOT,
                          timeout=600)
    assert proc.returncode == 1 and "no 'cat/' folder" in proc.stderr


def test_verify_catches_a_flipped_byte(tmp_path, toy_export):
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(toy_export, copy)
    assert "OK" in run("verify", str(copy), check_code=0).stdout
    blob = bytearray((copy / "model.onnx").read_bytes())
    blob[len(blob) // 2] ^= 1
    (copy / "model.onnx").write_bytes(bytes(blob))
    proc = run("verify", str(copy), check_code=1)
    assert "model.onnx" in proc.stdout and "does not match" in proc.stdout
