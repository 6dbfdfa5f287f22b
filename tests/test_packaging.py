"""Husky AI as a package: serving installs without torch, the wheel carries the shipped model, one line per
missing extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest
import tomllib

from conftest import EXPORT, ROOT, commands_in_a_process, running_app, serving_only_environment, skimage_photo


@pytest.fixture(scope="module")
def serving_only_env(tmp_path_factory) -> dict[str, str]:
    """An environment whose python cannot import torch, fastai, timm, ... (a sitecustomize refuses them)."""
    return serving_only_environment(tmp_path_factory.mktemp("serving-only"))


def test_the_blocker_really_blocks_torch(serving_only_env):
    """Guards the tests below: without it they would prove nothing."""
    out = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True,
                         env=serving_only_env, timeout=60)
    assert out.returncode != 0 and "a serving install has none" in out.stderr


def test_predict_evaluate_and_verify_run_without_the_training_stack(serving_only_env, tmp_path):
    """In one process of a serving install (what training needs there is one line naming the extra:
    tests/cli/test_cli_newcomer.py)."""
    photo = tmp_path / "cat.jpg"
    skimage_photo("chelsea").save(photo)
    for label, names in {"husky": ["astronaut"], "not_husky": ["chelsea", "coffee"]}.items():
        (tmp_path / "set" / label).mkdir(parents=True)
        for name in names:
            skimage_photo(name).save(tmp_path / "set" / label / f"{name}.jpg")

    predicted, evaluated, verified = commands_in_a_process(
        [(["predict", photo], tmp_path), (["evaluate", tmp_path / "set", "--json"], tmp_path), (["verify"], tmp_path)],
        serving_only_env)
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.splitlines()[-1].split("\t")[1] == "not_husky"
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    assert result["n"] == 3 and result["confusion"]["tn"] >= 1  # the cat and the coffee are not huskies
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "trusted: the shipped model" in verified.stdout


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
