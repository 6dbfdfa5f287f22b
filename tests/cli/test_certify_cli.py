"""``huskyai predict --certify``, in-process: the certified answer in words and its time, on the noise-trained
model by default, one clear line when there is none or the model named cannot certify, and an audit line."""

from __future__ import annotations

import json

import pytest
from certify_helpers import SIGMA, noise_trained_export, photo

from huskyai.cli.main import main
from huskyai.trust import exports


@pytest.fixture(scope="session")
def robust_export(tmp_path_factory, toy_data):
    return noise_trained_export(tmp_path_factory, toy_data)


@pytest.fixture
def photo_file(tmp_path):
    path = tmp_path / "coffee.jpg"
    path.write_bytes(photo("coffee"))
    return path


@pytest.fixture
def audit_log(tmp_path, monkeypatch):
    log = tmp_path / "audit.jsonl"
    monkeypatch.setenv("HUSKYAI_AUDIT_LOG", str(log))
    return log


def test_without_a_noise_trained_model_installed_it_says_so_in_one_line(photo_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(exports.SHIPPED_FOLDERS, "robust", tmp_path / "export-robust")
    assert main(["predict", "--certify", str(photo_file)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert 'the noise-trained model ("robust") is not in this installation' in err


def test_a_model_not_trained_under_noise_is_refused_before_any_photo(photo_file, capsys):
    assert main(["predict", "--certify", "--model", "husky", str(photo_file)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "not trained under noise" in captured.err and "Traceback" not in captured.err


def test_certify_and_explain_are_asked_one_at_a_time(photo_file, capsys):
    assert main(["predict", "--certify", "--explain", "out.png", str(photo_file)]) == 1
    assert "ask for one of them at a time" in capsys.readouterr().err


@pytest.mark.slow  # trains the noise-trained export (about 25 s, once per run)
def test_certify_prints_the_answer_in_words_and_its_time(robust_export, photo_file, tmp_path, audit_log,
                                                         monkeypatch, capsys):
    monkeypatch.setitem(exports.SHIPPED_FOLDERS, "robust", robust_export)  # the default: the shipped "robust"
    unreadable = tmp_path / "notes.jpg"
    unreadable.write_text("not a photo")
    assert main(["predict", "--certify", "--n", "100", str(photo_file), str(unreadable)]) == 1
    out, err = capsys.readouterr()
    (line,) = out.splitlines()
    assert line.startswith(f"{photo_file}: ")
    assert ("certified within radius" in line or "No certified answer" in line) and line.endswith(" s)")
    assert "from 100 noisy copies" in line or "(100 noisy copies)" in line
    assert "notes.jpg: not a supported image" in err
    lines = [json.loads(x) for x in audit_log.read_text().splitlines()]
    assert [(x["source"], x["refused"] is None) for x in lines] == [("cli-certify", True), ("cli-certify", False)]
    assert lines[0]["model_sha256"] == exports.sha256((robust_export / "model.json").read_bytes())


@pytest.mark.slow  # trains the noise-trained export (about 25 s, once per run)
def test_certify_json_names_every_part_of_the_certificate(robust_export, photo_file, audit_log, capsys):
    assert main(["predict", "--certify", "--n", "100", "--json", "--model", str(robust_export), str(photo_file)]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert set(result) == {"file", "label", "certified", "radius", "sigma", "n0", "n", "alpha", "seconds", "verdict"}
    assert (result["sigma"], result["n"], result["n0"], result["alpha"]) == (SIGMA, 100, 100, 0.001)
    assert result["certified"] == (result["label"] != "abstain") and result["seconds"] > 0
    assert result["radius"] > 0 if result["certified"] else result["radius"] == 0
