"""Husky AI as a package: serving installs without torch, the wheel carries the shipped model, one line per
missing extra."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import tomllib

from conftest import (
    EXPORT,
    ROOT,
    commands_in_a_process,
    make_toy_dataset,
    running_app,
    serving_only_environment,
    skimage_photo,
)
from huskyai.mood.sample import write_sample
from huskyai.trust import exports


@pytest.fixture(scope="module")
def serving_only_env(tmp_path_factory) -> dict[str, str]:
    """An environment whose python cannot import torch, fastai, timm, ... (a sitecustomize refuses them)."""
    return serving_only_environment(tmp_path_factory.mktemp("serving-only"))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("files")
    cat = folder / "cat.jpg"
    skimage_photo("chelsea").save(cat)
    for label, names in {"husky": ["astronaut"], "not_husky": ["chelsea", "coffee"]}.items():
        (folder / "set" / label).mkdir(parents=True)
        for name in names:
            skimage_photo(name).save(folder / "set" / label / f"{name}.jpg")
    diary, _ = write_sample(folder / "diary.csv", days=60, seed=1)
    export = folder / "export"
    shutil.copytree(EXPORT, export)
    return {"folder": folder, "cat": cat, "set": folder / "set", "diary": diary, "export": export,
            "toy": make_toy_dataset(folder / "toy", 2, 64)}


# every command that needs an extra, and the extra it must name
NEEDS_AN_EXTRA = {
    "train": (["train", "--data", "{toy}", "--out", "{folder}/run"], "train"),
    "doctor": (["doctor", "{toy}", "--sheet", ""], "train"),
    "attack": (["attack", "junk", "--out", "{folder}/report"], "redteam"),
    "mood train": (["mood", "train", "--csv", "{diary}", "--out", "{folder}/mood"], "mood"),
    "mood train --models ridge": (["mood", "train", "--csv", "{diary}", "--models", "ridge",
                                   "--out", "{folder}/mood"], "mood"),
    "score --out *.parquet": (["score", "{cat}", "--out", "{folder}/results.parquet", "--no-progress"], "score"),
    "predict --explain (grad-cam)": (["predict", "{cat}", "--explain", "{folder}/why.png", "--explain-method",
                                      "grad-cam"], "explain"),
    "explain (grad-cam)": (["explain", "{cat}", "--out", "{folder}/why.png", "--explain-method", "grad-cam"],
                           "explain"),
    "evaluate --explain (grad-cam)": (["evaluate", "{toy}", "--sheet", "{folder}/sheet.png", "--explain",
                                       "--explain-method", "grad-cam"], "explain"),
    "sign --int8": (["sign", "{export}", "--int8", "{toy}"], "train"),
}
# the shipped model's folder, as a newcomer may name it
SHIPPED_FOLDER_NAMES = ("export", "./export/", str(EXPORT))


@pytest.fixture(scope="module")
def serving_install(serving_only_env, files) -> dict:
    """Every command of this module, run in one process of a serving install (its python cannot import the
    extras' packages): each command's exit code and output, by name; and the shipped card's bytes before them."""
    folder = files["folder"]
    commands = {name: ([a.format(**files) for a in argv], folder) for name, (argv, _) in NEEDS_AN_EXTRA.items()}
    for out in SHIPPED_FOLDER_NAMES:
        commands[f"train --out {out}"] = (["train", "--data", files["toy"], "--out", out], ROOT)
    commands |= {"predict": (["predict", files["cat"]], folder),
                 "evaluate": (["evaluate", files["set"], "--json"], folder),
                 "verify": (["verify"], folder),
                 "score --out *.csv": (["score", files["cat"], "--out", folder / "results.csv", "--workers", "0",
                                        "--no-progress"], ROOT)}
    card = (EXPORT / exports.CARD_NAME).read_bytes()
    ran = commands_in_a_process(list(commands.values()), serving_only_env)
    return {"card before": card} | dict(zip(commands, ran))


def test_the_blocker_really_blocks_torch(serving_only_env):
    """Guards the tests below: without it they would prove nothing."""
    out = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True,
                         env=serving_only_env, timeout=60)
    assert out.returncode != 0 and "a serving install has none" in out.stderr


def test_predict_evaluate_and_verify_run_without_the_training_stack(serving_install):
    predicted, evaluated, verified = (serving_install[name] for name in ("predict", "evaluate", "verify"))
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.splitlines()[-1].split("\t")[1] == "not_husky"
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert result["n"] == 3 and result["confusion"]["tn"] >= 1  # the cat and the coffee are not huskies
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "trusted: the shipped model" in verified.stdout


def test_score_to_csv_on_a_serving_install(serving_install, files):
    proc = serving_install["score --out *.csv"]
    assert proc.returncode == 0, proc.stderr
    (row,) = pd.read_csv(files["folder"] / "results.csv").to_dict("records")
    assert row["label"] == "not_husky" and row["path"] == str(files["cat"])


@pytest.mark.parametrize("name", NEEDS_AN_EXTRA)
def test_a_missing_extra_is_one_line_naming_it(name, serving_install):
    proc, extra = serving_install[name], NEEDS_AN_EXTRA[name][1]
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and f"pip install 'huskyai[{extra}]'" in lines[0], lines[0]


def test_train_refuses_the_shipped_export_folder(serving_install):
    """Refused before anything runs (even before the missing training extra), and export/ is untouched."""
    for out in SHIPPED_FOLDER_NAMES:
        proc = serving_install[f"train --out {out}"]
        assert proc.returncode == 1 and "the shipped model's folder" in proc.stderr, proc.stderr
        assert "--replace-shipped" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert (EXPORT / exports.CARD_NAME).read_bytes() == serving_install["card before"]


def test_requirements_txt_is_the_packages_serving_dependencies():
    """Spaces installs requirements.txt, pip installs pyproject's list: they must be the same, and torch-free."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    assert sorted(ln for ln in lines if ln) == sorted(declared)
    assert not any(name in " ".join(declared) for name in ("torch", "fastai", "timm"))


@pytest.mark.slow
def test_the_app_serves_without_the_training_stack(serving_only_env, tmp_path):
    from gradio_client import Client, handle_file

    photo = tmp_path / "coffee.png"
    skimage_photo("coffee").save(photo)
    with running_app(tmp_path, PYTHONPATH=serving_only_env["PYTHONPATH"]) as app:
        verdict = Client(app["url"], verbose=False).predict(handle_file(str(photo)), api_name="/predict")
    assert "Not a husky" in str(verdict)


@pytest.mark.slow
def test_the_wheel_carries_the_shipped_model_and_runs_from_anywhere(tmp_path):
    """`pip install .` elsewhere: the model is package data, found without the source tree; no pickle ships."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(ROOT)], check=True, timeout=600, cwd=tmp_path)
    (wheel,) = wheels.glob("huskyai-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {p.name for p in EXPORT.iterdir() if p.is_file()} - {"learner.pkl"}
    assert {f"huskyai/export/{n}" for n in shipped} <= set(names)
    assert not any(n.endswith((".pkl", ".pyi")) for n in names)
    assert "huskyai/redteam/__init__.py" in names

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, timeout=600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    skimage_photo("chelsea").save(elsewhere / "photo.jpg")
    env = dict(os.environ, PYTHONPATH=str(site))
    code = ("import huskyai; m = huskyai.load('husky'); print(huskyai.__file__); print(m.export_dir); "
            "print(m.trust); print(m.predict('photo.jpg').label)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=elsewhere,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    module, folder, trust, label = out.stdout.strip().splitlines()
    assert module.startswith(str(site)) and folder == str(site / "huskyai" / "export")
    assert trust.startswith("the shipped model") and label == "not_husky"
    script = subprocess.run([sys.executable, str(site / "bin" / "huskyai"), "predict", "photo.jpg"],
                            capture_output=True, text=True, env=env, cwd=elsewhere, timeout=300)
    assert script.returncode == 0 and script.stdout.splitlines()[-1].split("\t")[1] == "not_husky", script.stderr
