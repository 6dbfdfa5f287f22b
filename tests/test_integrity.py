"""Attacks on the model files, each on a copy of the real export/: every one must be refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import huskyai
from conftest import EXPORT, ROOT, python_env
from huskyai import artifacts


@pytest.fixture
def export_copy(tmp_path) -> Path:
    copy = tmp_path / "export"
    shutil.copytree(EXPORT, copy)
    return copy


def verify(folder: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "huskyai", "verify", str(folder)], capture_output=True, text=True,
                          env=python_env() | (env or {}), cwd=ROOT, timeout=300)


def inject_payload(export: Path, marker: Path) -> None:
    """Insert an os.system call into the real learner pickle, the way fickling does."""
    from fickling.pytorch import PyTorchModelWrapper

    evil = export / "evil.pkl"
    PyTorchModelWrapper(export / "learner.pkl").inject_payload(
        f"import os; os.system('touch {marker}')", evil, injection="insertion")
    evil.replace(export / "learner.pkl")


def test_one_flipped_byte_in_the_pickle_is_refused(export_copy):
    blob = bytearray((export_copy / "learner.pkl").read_bytes())
    blob[len(blob) // 3] ^= 0x01
    (export_copy / "learner.pkl").write_bytes(bytes(blob))
    with pytest.raises(huskyai.IntegrityError, match="learner.pkl"):
        huskyai.load_learner(export_copy)
    with pytest.raises(huskyai.IntegrityError, match="learner.pkl"):
        huskyai.load(export_copy)
    proc = verify(export_copy)
    assert proc.returncode == 1 and "learner.pkl" in proc.stdout


def test_injected_pickle_payload_is_refused_and_never_runs(export_copy, tmp_path):
    marker = tmp_path / "payload_ran"
    inject_payload(export_copy, marker)
    # the payload is live: fastai's own loader runs it (in a throwaway process)
    live_marker = tmp_path / "live_payload_ran"
    live = tmp_path / "live"
    shutil.copytree(EXPORT, live)
    inject_payload(live, live_marker)
    subprocess.run([sys.executable, "-c", "import sys; from fastai.learner import load_learner; "
                    "load_learner(sys.argv[1])", str(live / "learner.pkl")],
                   capture_output=True, env=python_env(), timeout=300)
    assert live_marker.exists(), "the injected payload should run under a plain unpickle"

    with pytest.raises(huskyai.IntegrityError, match="learner.pkl"):
        huskyai.load_learner(export_copy)
    with pytest.raises(huskyai.IntegrityError, match="learner.pkl"):
        huskyai.load(export_copy)
    proc = verify(export_copy)
    assert proc.returncode == 1
    assert "does not match" in proc.stdout and "builtins.exec" in proc.stdout
    assert not marker.exists()


def test_payload_with_a_matching_card_is_still_refused_by_the_scan(export_copy, tmp_path):
    """An attacker who rewrites the card's hashes too still meets the pickle policy."""
    marker = tmp_path / "payload_ran"
    inject_payload(export_copy, marker)
    card = json.loads((export_copy / "model.json").read_text())
    artifacts.write_card(export_copy, card)  # rehash everything, as an attacker would
    with pytest.raises(huskyai.IntegrityError, match="exec"):
        huskyai.load_learner(export_copy)
    assert verify(export_copy).returncode == 1
    assert not marker.exists()


def test_edited_bias_in_the_safe_weights_is_refused(export_copy):
    from safetensors.torch import load_file, save_file

    weights = load_file(str(export_copy / "model.safetensors"))
    weights["head.bias"][1] += 5.0  # the backdoor: everything leans towards "husky"
    save_file(weights, str(export_copy / "model.safetensors"))
    with pytest.raises(huskyai.IntegrityError, match="model.safetensors"):
        huskyai.load(export_copy)
    assert verify(export_copy).returncode == 1


def test_card_pointing_at_other_hashes_is_refused(export_copy):
    card = json.loads((export_copy / "model.json").read_text())
    card["files"]["model.safetensors"] = "0" * 64
    (export_copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(huskyai.IntegrityError, match="model.safetensors"):
        huskyai.load(export_copy)


def test_signature_catches_a_consistent_forgery(export_copy, monkeypatch):
    from safetensors.torch import load_file, save_file

    key = b"test-signing-key"
    signed = subprocess.run([sys.executable, "-m", "huskyai", "sign", str(export_copy)], capture_output=True,
                            text=True, env=python_env() | {artifacts.SIGNING_KEY_ENV: key.decode()}, cwd=ROOT)
    assert signed.returncode == 0, signed.stderr
    monkeypatch.setenv(artifacts.SIGNING_KEY_ENV, key.decode())
    assert huskyai.load(export_copy).predict(ROOT / "examples" / "coffee.jpg").label == "not_husky"
    assert verify(export_copy, {artifacts.SIGNING_KEY_ENV: key.decode()}).returncode == 0

    weights = load_file(str(export_copy / "model.safetensors"))
    weights["head.bias"][1] += 5.0
    save_file(weights, str(export_copy / "model.safetensors"))
    card = json.loads((export_copy / "model.json").read_text())
    card["files"]["model.safetensors"] = artifacts.sha256_of(export_copy / "model.safetensors")
    (export_copy / "model.json").write_text(json.dumps(card))  # hashes consistent again, signature stale
    with pytest.raises(huskyai.IntegrityError, match="signature is wrong"):
        huskyai.load(export_copy)
    proc = verify(export_copy, {artifacts.SIGNING_KEY_ENV: key.decode()})
    assert proc.returncode == 1 and "signature" in proc.stdout


def test_unsigned_model_is_refused_when_a_key_is_set(export_copy, monkeypatch):
    monkeypatch.setenv(artifacts.SIGNING_KEY_ENV, "some-key")
    with pytest.raises(huskyai.IntegrityError, match="not signed"):
        huskyai.load(export_copy)
    with pytest.raises(huskyai.IntegrityError, match="not signed"):
        huskyai.load_learner(export_copy)


def test_the_shipped_export_verifies_clean():
    proc = verify(EXPORT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "within the Husky AI learner policy" in proc.stdout
