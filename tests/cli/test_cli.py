"""The command line, run as users run it (python -m huskyai ...), and the Python API it is a skin over."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import huskyai
from conftest import (
    EXPORT,
    ROOT,
    SHARED_HUSKIES,
    Ran,
    bad_files,
    jpeg_bytes,
    make_toy_dataset,
    python_env,
    skimage_photo,
)
from huskyai.cli.main import build_parser, main
from huskyai.cli.predict import explain_paths
from huskyai.images.decode import load_image
from huskyai.mood.sample import write_sample
from huskyai.training.config import DoctorConfig, ExplainConfig, TrainConfig, options_from


@pytest.fixture
def run(cli):
    """``run("predict", ..., check_code=0)``: the command in this process (conftest's ``cli``), its exit code
    checked when one is given."""
    def checked(*args: str, check_code: int | None = None) -> Ran:
        proc = cli(*args)
        if check_code is not None:
            assert proc.returncode == check_code, proc.stdout + proc.stderr
        return proc

    return checked


@pytest.mark.slow
def test_predict_json_and_exit_codes(tmp_path, toy_export, run):
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


@pytest.mark.slow
def test_evaluate_json(tmp_path, toy_export, run):
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


def test_bad_model_folder_and_bad_data_exit_non_zero(tmp_path, run):
    proc = run("predict", "x.jpg", "--model", str(tmp_path), check_code=1)
    assert "no model card" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), check_code=1)
    assert "no such folder" in proc.stderr
    assert run("predict").returncode == 2  # usage error from argparse


@pytest.mark.slow
def test_train_script_matches_cli(tmp_path):
    data = make_toy_dataset(tmp_path / "d", n_per_class=2, size=64)
    (data / "not_husky").rename(data / "other")
    proc = subprocess.run([sys.executable, "train.py", "--data", str(data), "--positive", "cat", "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, env=python_env(), cwd=ROOT,
                          timeout=600)
    assert proc.returncode == 1 and "no 'cat/' folder" in proc.stderr


@pytest.mark.slow
def test_verify_catches_a_flipped_byte(tmp_path, toy_export, run):
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(toy_export, copy)
    assert "OK" in run("verify", str(copy), check_code=0).stdout
    blob = bytearray((copy / "model.onnx").read_bytes())
    blob[len(blob) // 2] ^= 1
    (copy / "model.onnx").write_bytes(bytes(blob))
    proc = run("verify", str(copy), check_code=1)
    assert "model.onnx" in proc.stdout and "does not match" in proc.stdout


# ---- the Python API the CLI is a skin over ---------------------------------------------------------

def test_the_cli_takes_its_defaults_from_the_api():
    """No default is written twice: what the CLI passes when given nothing is the config's own default."""
    for command, config in (("train", TrainConfig), ("doctor", DoctorConfig), ("predict", ExplainConfig),
                            ("evaluate", ExplainConfig)):
        args = build_parser().parse_args([command, "--data", "d"] if command == "train" else [command, "d"])
        passed = options_from(args, config)
        assert passed == {k: v for k, v in asdict(config()).items() if k in passed}
        assert set(asdict(config())) - set(passed) <= {"sign"}  # Python-only options
    args = build_parser().parse_args(["train", "--data", "d", "--plain-head", "--epochs", "2", "--head-c", "0.1"])
    assert TrainConfig(**options_from(args, TrainConfig)) == TrainConfig(zero_shot=False, epochs=2, c=0.1)
    with pytest.raises(TypeError, match="epoch"):
        huskyai.train("d", epoch=2)  # a misspelt option is refused before anything runs
    args = build_parser().parse_args(["predict", "x.jpg", "--explain", "o.png", "--explain-method", "occlusion"])
    assert (args.explain, options_from(args, ExplainConfig)) == ("o.png", {"explain_method": "occlusion"})


def test_explain_paths_one_per_photo(tmp_path):
    out = tmp_path / "maps" / "why.png"
    assert explain_paths(out, ["a/cat.jpg"]) == [out]
    assert explain_paths(tmp_path / "why", ["cat.jpg"]) == [tmp_path / "why.png"]  # Pillow needs a suffix
    assert explain_paths(out, ["a/cat.jpg", "b/dog.png"]) == [out.with_name(n) for n in ("why-cat.png", "why-dog.png")]
    named = explain_paths(out, ["a/cat.jpg", "b/cat.png", "dog.jpg"])  # two photos called cat: never one file
    assert [p.name for p in named] == ["why-cat-1.png", "why-cat-2.png", "why-dog.png"]


def test_evaluate_explain_needs_a_sheet(capsys):
    assert main(["evaluate", "nowhere", "--explain"]) == 1
    assert "--sheet" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_and_evaluate_explain_with_the_shipped_model(tmp_path, run):
    """Real photos, the shipped model, occlusion maps (no torch needed): the overlays have the photos' sizes, and
    the contact sheet of mistakes shows the overlays, not the plain photos."""
    husky = sorted((SHARED_HUSKIES / "husky").glob("*.jpg"))[0]
    cat = tmp_path / "cat.jpg"
    skimage_photo("chelsea").save(cat)
    out = json.loads(run("predict", str(husky), str(cat), "--explain", str(tmp_path / "why.png"), "--json",
                         "--explain-method", "occlusion", check_code=0).stdout)
    assert [(r["label"], r["method"], Path(r["explanation"]).name) for r in out] == [
        ("husky", "occlusion", f"why-{husky.stem}.png"), ("not_husky", "occlusion", "why-cat.png")]
    for r, photo in zip(out, (husky, cat)):
        assert Image.open(r["explanation"]).size == load_image(photo).size
    header, line = run("predict", str(cat), "--explain", str(tmp_path / "one.png"), "--explain-method", "occlusion",
                       check_code=0).stdout.splitlines()
    assert header.split("\t") == ["file", "label", "P(husky)", "heatmap", "method"]
    assert line.split("\t")[1:] == ["not_husky", "0.000", str(tmp_path / "one.png"), "occlusion"]

    data = tmp_path / "set"
    for label, photo in (("not_husky", husky), ("husky", cat)):  # two planted mistakes
        (data / label).mkdir(parents=True)
        (data / label / photo.name).write_bytes(photo.read_bytes())
    plain, maps = tmp_path / "plain.png", tmp_path / "maps.png"
    run("evaluate", str(data), "--sheet", str(plain), check_code=0)
    proc = run("evaluate", str(data), "--sheet", str(maps), "--explain", "--explain-method", "occlusion", check_code=0)
    assert "with where the model looked" in proc.stderr
    a, b = (np.asarray(Image.open(p).convert("RGB"), dtype=np.int16) for p in (plain, maps))
    tile = (slice(30, 200), slice(200, 400))  # the second tile (husky/ is scanned first): the husky in not_husky/
    assert np.abs(a[tile] - b[tile]).mean() > 5  # its heatmap is drawn over it
    assert b.shape[0] > a.shape[0]  # each tile names the map's method in one more caption line


def test_verify_returns_what_the_cli_prints(tmp_path):
    import shutil

    shipped = huskyai.verify()
    assert shipped.ok and "pinned in the huskyai package" in shipped.trust and shipped.pickle_note is None
    assert any("matches its model card" in line for line in shipped.findings)
    copy = tmp_path / "export"
    shutil.copytree(EXPORT, copy)
    blob = bytearray((copy / "model.onnx").read_bytes())
    blob[len(blob) // 2] ^= 1
    (copy / "model.onnx").write_bytes(bytes(blob))
    broken = huskyai.verify(copy)
    assert not broken.ok and broken.trust is None and "model.onnx" in broken.problems[0]
    with pytest.raises(huskyai.IntegrityError, match="does not match"):
        huskyai.sign(copy)  # sign refuses what verify refuses


def test_verify_fails_where_load_would_refuse(tmp_path, run):
    """A copy of the shipped export with an edited card is nobody's: load refuses it, so verify must not say OK
    and exit 0. Its files all match the card, so sign (the remedy verify names) still signs it."""
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(EXPORT, copy)
    card = json.loads((copy / "model.json").read_text())
    (copy / "model.json").write_text(json.dumps(card | {"decision_threshold": 0.0}))  # everything is a husky
    with pytest.raises(huskyai.IntegrityError, match="not signed and not pinned"):
        huskyai.load(copy)
    proc = run("verify", copy)
    fail = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert proc.returncode == 1 and len(fail) == 1, proc.stdout + proc.stderr
    assert "not signed and not pinned" in fail[0] and "huskyai sign DIR" in fail[0]
    assert not huskyai.verify(copy).ok and huskyai.verify(copy).trust is None
    checked = run("verify", copy, "--trust-unsigned")  # files only, on request
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "matches its model card" in checked.stdout and "UNSIGNED" in checked.stdout and "FAIL" not in checked.stdout
    huskyai.sign(copy)
    signed = run("verify", copy)
    assert huskyai.verify(copy).ok and signed.returncode == 0 and "signed" in signed.stdout


BLOCK_TORCH = """
import json, sys

class RefuseTorch:  # as on an install without the train extra: torch and fastai cannot be imported
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "fastai"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, RefuseTorch())
"""


def run_script(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=python_env(), cwd=ROOT,
                          timeout=300)


def test_train_scans_the_photos_before_importing_torch(tmp_path):
    data = make_toy_dataset(tmp_path / "d", n_per_class=2, size=64)
    for photo in (data / "not_husky").iterdir():
        photo.write_bytes(b"not a photo")  # the class is there, but nothing in it is usable
    code = ("import sys\nfrom huskyai.cli.main import main\n"
            f"rc = main(['train', '--data', {str(data)!r}, '--out', {str(tmp_path / 'out')!r}])\n"
            "print(rc, sorted(m for m in ('torch', 'fastai', 'timm', 'matplotlib') if m in sys.modules))")
    proc = run_script(code)
    assert proc.stdout.split("\n")[-2] == "1 []", proc.stdout + proc.stderr  # refused, and nothing heavy loaded
    assert "no usable photos in not_husky/" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_training_extra_is_one_line_everywhere(tmp_path):
    """With torch missing (a serving install with the mood extra, say): every command that needs it says so in
    one line naming the extra, and mood's fastai candidate names the extra and the way round (--models ridge,hgb)."""
    data = make_toy_dataset(tmp_path / "d", n_per_class=2, size=64)
    diary, _ = write_sample(tmp_path / "diary.csv", days=60, seed=1)
    code = BLOCK_TORCH + f"""
from huskyai.cli import main
import huskyai
codes = [main(['train', '--data', {str(data)!r}, '--out', {str(tmp_path / 'out')!r}]),
         main(['doctor', {str(data)!r}]), main(['attack', 'junk', '--out', {str(tmp_path / 'report')!r}]),
         main(['mood', 'train', '--csv', {str(diary)!r}, '--models', 'ridge,fastai',
               '--out', {str(tmp_path / 'mood')!r}])]
try:
    huskyai.load_learner()
except ImportError as err:
    codes.append(type(err).__name__)
print(json.dumps(codes))
"""
    proc = run_script(code)
    assert json.loads(proc.stdout.splitlines()[-1]) == [1, 1, 1, 1, "MissingExtraError"], proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 4 and "Traceback" not in proc.stderr, proc.stderr
    for line, what in zip(lines, ("training", "the label doctor", "the red-team kit")):
        assert line.startswith(f"error: {what} needs torch") and "pip install 'huskyai[" in line
    assert lines[3].startswith("error: ") and "pip install 'huskyai[train]'" in lines[3], lines[3]
    assert "--models ridge,hgb" in lines[3]


@pytest.mark.slow
def test_train_evaluate_verify_from_python(tmp_path):
    data = make_toy_dataset(tmp_path / "d", n_per_class=4, size=64)
    messages: list[str] = []
    run = huskyai.train(data, tmp_path / "out", size=64, valid_pct=0.25, report=messages.append)
    assert run.folder == (tmp_path / "out").resolve() and run.metrics == run.card["metrics"]
    assert set(run.metrics["validation"]) >= {"accuracy", "precision", "recall", "f1", "confusion"}
    assert any(m.startswith("exported to") for m in messages)
    checked = huskyai.verify(run.folder)
    assert checked.ok and checked.trust.startswith("signed")  # signed with this test run's key
    metrics = huskyai.evaluate(run.folder, data, report=messages.append)
    assert metrics["n"] == 8 and metrics == huskyai.evaluate(huskyai.load(run.folder), data, report=print)
