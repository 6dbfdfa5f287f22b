"""Writing into an export, attacked: a link planted where a writer puts a file must never be written through.

The attack: a third party's export whose redteam.json (or model.onnx, model.int8.onnx) is a symlink to this
machine's signing key. A writer that opens the name follows the link and overwrites the key with bytes the
attacker knows, who can then sign anything this machine trusts. Every test keeps its own signing key in
tmp_path (never the user's).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import huskyai
from conftest import EXPORT, ROOT, make_toy_dataset, python_env
from huskyai.errors import IntegrityError
from huskyai.trust import exports, keys
from huskyai.trust import writer as safewrite


@pytest.fixture
def key_file(tmp_path, monkeypatch) -> Path:
    """This test's own signing key file, made as signing makes it; returns its path."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv(keys.SIGNING_KEY_ENV, raising=False)
    keys.signing_key(create=True)
    return keys.key_path()


@pytest.fixture
def own_export(tmp_path, key_file) -> Path:
    """A copy of the shipped export made one's own (its card renamed) and signed with this test's key."""
    folder = tmp_path / "export"
    shutil.copytree(EXPORT, folder)
    card = json.loads((folder / "model.json").read_text())
    safewrite.write_card(folder, card | {"name": "Husky AI, my own copy"}, keys.signing_key())
    assert "signed with this machine's key" in exports.open_export(folder).trust
    return folder


def listing(folder: Path) -> dict[str, bytes | str]:
    """Every entry in ``folder``: a file's bytes, or where a link points."""
    return {p.name: os.readlink(p) if p.is_symlink() else p.read_bytes() for p in sorted(folder.iterdir())}


# ---- sign: the red-team report, the upgrade's ONNX graph, the INT8 graph --------------------------------

@pytest.mark.parametrize("route", ["report", "onnx", "int8"])
def test_sign_never_writes_through_a_link_to_the_signing_key(route, own_export, key_file, tmp_path, cli):
    key = key_file.read_bytes()
    card = json.loads((own_export / "model.json").read_text())
    if route == "report":  # a summary made for these weights, as `huskyai attack all` writes it
        target, args = "redteam.json", ["--report", str(tmp_path / "summary.json")]
        (tmp_path / "summary.json").write_text(json.dumps({"weights_sha256": card["files"]["model.safetensors"]}))
    elif route == "onnx":  # an export from before model.onnx shipped: sign would build and add the graph
        target, args = "model.onnx", []
        (own_export / "model.onnx").unlink()
        del card["files"]["model.onnx"]
        safewrite.save_card(own_export, card | {"format_version": 1}, key)
    else:  # --int8: sign would quantize the graph and add model.int8.onnx
        target = "model.int8.onnx"
        args = ["--int8", str(make_toy_dataset(tmp_path / "photos", n_per_class=2, size=64)), "--int8-photos", "2"]
    (own_export / target).symlink_to(key_file)
    before = listing(own_export)

    proc = cli("sign", str(own_export), *args)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and f"{target}: is a symlink" in proc.stderr, proc.stderr
    assert key_file.read_bytes() == key  # the key is untouched ...
    assert listing(own_export) == before  # ... and so is the export: not a byte written
    (own_export / target).unlink()
    assert "signed with this machine's key" in exports.open_export(own_export).trust  # the key still verifies it


def test_a_signed_report_is_written_as_a_new_regular_file(own_export, key_file, tmp_path):
    """The honest run of the same command: the report lands as a regular file that the signed card lists."""
    card = json.loads((own_export / "model.json").read_text())
    summary = json.dumps({"weights_sha256": card["files"]["model.safetensors"]}).encode()
    (tmp_path / "summary.json").write_bytes(summary)
    done = huskyai.sign(own_export, redteam_report=tmp_path / "summary.json")
    assert (own_export / "redteam.json").read_bytes() == summary and not (own_export / "redteam.json").is_symlink()
    model = huskyai.load(own_export)
    assert model.model_sha256 == done.card_sha256 and model.card["files"]["redteam.json"] == exports.sha256(summary)
    assert not [p for p in own_export.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_sign_writes_no_file_its_card_does_not_list(own_export, tmp_path):
    """A report made for other weights is refused before anything is written."""
    (tmp_path / "summary.json").write_text(json.dumps({"weights_sha256": "0" * 64}))
    before = listing(own_export)
    with pytest.raises(IntegrityError, match="not made for the model"):
        huskyai.sign(own_export, redteam_report=tmp_path / "summary.json")
    assert listing(own_export) == before


# ---- safewrite itself -----------------------------------------------------------------------------------

def test_safewrite_refuses_a_link_a_folder_and_a_fifo_at_the_destination(tmp_path):
    folder, secret = tmp_path / "export", tmp_path / "secret"
    folder.mkdir()
    secret.write_bytes(b"precious")
    (folder / "model.onnx").symlink_to(secret)
    (folder / "redteam.json").symlink_to(tmp_path / "not-yet-there")  # a dangling link: O_CREAT would create it
    (folder / "model.safetensors").mkdir()
    os.mkfifo(folder / "top_losses.png")
    before = sorted(p.name for p in folder.iterdir())
    for name, kind in (("model.onnx", "a symlink"), ("redteam.json", "a symlink"),
                       ("model.safetensors", "a folder"), ("top_losses.png", "a FIFO")):
        with pytest.raises(IntegrityError, match=f"{name}: is {kind}"):
            safewrite.write_file(folder, name, b"attacker-known bytes")
    with pytest.raises(IntegrityError, match="model.onnx: is a symlink"):
        safewrite.write_files(folder, {"model.json": b"{}", "model.onnx": b"x"})  # checked before any is written
    assert secret.read_bytes() == b"precious" and not (tmp_path / "not-yet-there").exists()
    assert sorted(p.name for p in folder.iterdir()) == before  # no temporary file left, no card written


@pytest.mark.parametrize("name", ["../model.json", "sub/model.onnx", "/tmp/model.onnx", "notes.txt", ".", "..", ""])
def test_safewrite_writes_only_an_exports_own_plain_names(tmp_path, name):
    folder = tmp_path / "export"
    folder.mkdir()
    with pytest.raises(IntegrityError, match="only an export's own file names"):
        safewrite.write_file(folder, name, b"x")
    assert list(tmp_path.iterdir()) == [folder] and list(folder.iterdir()) == []


def test_safewrite_replaces_a_file_without_writing_through_it(tmp_path):
    """A hard link is no link to follow, but opening it for writing would still write the other name:
    the new bytes must go into a new file, renamed over the old entry."""
    folder, secret = tmp_path / "export", tmp_path / "secret"
    folder.mkdir()
    secret.write_bytes(b"precious")
    os.link(secret, folder / "model.onnx")
    safewrite.write_file(folder, "model.onnx", b"new graph")
    assert (folder / "model.onnx").read_bytes() == b"new graph" and secret.read_bytes() == b"precious"
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE((folder / "model.onnx").stat().st_mode) == 0o644 & ~umask
    assert [p.name for p in folder.iterdir()] == ["model.onnx"]


def test_safewrite_removes_its_temporary_file_when_a_write_fails(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    with pytest.raises(TypeError):
        safewrite.write_file(folder, "model.onnx", "not bytes")  # fails after the temporary file is made
    assert list(folder.iterdir()) == []


def test_write_card_refuses_a_link_among_the_exports_files(own_export, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"precious")
    (own_export / "model.onnx").unlink()
    (own_export / "model.onnx").symlink_to(secret)
    card_before = (own_export / "model.json").read_bytes()
    with pytest.raises(IntegrityError, match="model.onnx: is a symlink"):
        safewrite.write_card(own_export, {"name": "x"})
    assert (own_export / "model.json").read_bytes() == card_before
    with pytest.raises(IntegrityError, match="'notes.txt'"):
        safewrite.save_card(own_export, {"files": {"notes.txt": "0" * 64}})
    assert (own_export / "model.json").read_bytes() == card_before


# ---- the signing key ------------------------------------------------------------------------------------

@pytest.mark.parametrize("planted", ["link to a file", "dangling link"])
def test_the_signing_key_is_never_made_or_read_through_a_link(tmp_path, monkeypatch, planted):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv(keys.SIGNING_KEY_ENV, raising=False)
    path = keys.key_path()
    path.parent.mkdir(parents=True, mode=0o700)
    target = tmp_path / ".bashrc"
    if planted == "link to a file":
        target.write_bytes(b"# my shell settings\n")
        target.chmod(0o600)
    path.symlink_to(target)
    for create in (False, True):
        with pytest.raises(IntegrityError, match="never a symlink"):
            keys.signing_key(create=create)
    assert (target.read_bytes() == b"# my shell settings\n") if planted == "link to a file" else not target.exists()


def test_a_fifo_at_the_key_path_is_refused_not_waited_on(tmp_path):
    """Opening a FIFO for reading blocks until someone writes: the key must be a regular file, checked
    without hanging (run in a process of its own so a hang fails the test)."""
    config = tmp_path / "config"
    (config / "huskyai").mkdir(parents=True, mode=0o700)
    os.mkfifo(config / "huskyai" / "signing.key", 0o600)
    code = "import huskyai.trust.keys as k; k.signing_key(create=True)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=python_env() | {"XDG_CONFIG_HOME": str(config)}, cwd=ROOT)
    assert proc.returncode == 1 and "not a regular file" in proc.stderr, proc.stderr


def test_a_new_signing_key_is_private_and_made_once(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv(keys.SIGNING_KEY_ENV, raising=False)
    assert keys.signing_key() is None and not keys.key_path().exists()  # only made when asked
    key = keys.signing_key(create=True)
    assert key == keys.signing_key(create=True) == keys.key_path().read_bytes() and len(key) == 64
    assert stat.S_IMODE(keys.key_path().stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.key_path().parent.stat().st_mode) == 0o700
    keys.key_path().chmod(0o640)
    with pytest.raises(IntegrityError, match="readable by other users"):
        keys.signing_key()


# ---- the training writer --------------------------------------------------------------------------------

@pytest.mark.slow  # huskyai.training.writer imports torch and fastai
def test_training_refuses_a_link_planted_in_its_out_folder(tmp_path):
    """The staged export moves into ``out`` (huskyai.training.writer's move_into_place): a symlink sitting there under
    an export's name is refused before anything moves, and the old export stays whole."""
    from huskyai.training.writer import move_into_place

    stage, out, secret = tmp_path / "out" / ".export-x", tmp_path / "out", tmp_path / "secret"
    stage.mkdir(parents=True)
    secret.write_bytes(b"precious")
    safewrite.write_files(stage, {"model.safetensors": b"new weights", "model.onnx": b"new graph"})
    safewrite.write_card(stage, {"name": "new"})
    safewrite.write_files(out, {"model.onnx": b"old graph"})
    safewrite.write_card(out, {"name": "old"})
    (out / "model.safetensors").symlink_to(secret)
    old_card = (out / "model.json").read_bytes()
    with pytest.raises(IntegrityError, match="model.safetensors: is a symlink"):
        move_into_place(stage, out)
    assert secret.read_bytes() == b"precious" and (out / "model.json").read_bytes() == old_card
    assert (out / "model.onnx").read_bytes() == b"old graph"

    (out / "model.safetensors").unlink()
    move_into_place(stage, out)  # the honest move: every file in, the card last
    assert json.loads((out / "model.json").read_text())["name"] == "new"
    assert (out / "model.safetensors").read_bytes() == b"new weights" and list(stage.iterdir()) == []

