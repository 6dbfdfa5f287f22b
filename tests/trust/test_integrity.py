"""Attacks on the model files, as the red team made them: each must be refused, and no pickle may run."""

from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import huskyai
from conftest import EXPORT, ROOT, free_port, python_env
from huskyai.redteam.tamper import edit_bias, inject_pickle_payload, rehash_card
from huskyai.trust import exports, writer

COFFEE = ROOT / "examples" / "coffee.jpg"


@pytest.fixture
def export_copy(tmp_path) -> Path:
    copy = tmp_path / "export"
    shutil.copytree(EXPORT, copy)
    return copy


def make_own(folder: Path) -> None:
    """Turn a copy of the shipped export into an export of one's own: a new card, so no longer pinned."""
    card = json.loads((folder / "model.json").read_text())
    writer.write_card(folder, card | {"name": "Husky AI, my own copy"})


def sign(cli, folder: Path) -> str:
    """``huskyai sign FOLDER`` with this test run's own key (conftest points the config folder at a temporary one)."""
    proc = cli("sign", folder)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# ---- the root of trust ---------------------------------------------------------------------------

def test_the_shipped_card_is_the_one_pinned_in_the_package():
    assert exports.sha256((EXPORT / "model.json").read_bytes()) == exports.SHIPPED_CARD_SHA256
    model = huskyai.load()
    assert model.model_sha256 == exports.SHIPPED_CARD_SHA256 and "pinned in the huskyai package" in model.trust
    assert set(model.card["files"]) >= {"model.safetensors", "model.onnx"}
    assert "learner.pkl" not in model.card["files"]  # the shipped export carries no pickle


@pytest.mark.slow
def test_shipped_export_backdoored_in_place_and_rehashed_is_refused(tmp_path):
    """The series' attack on a fresh clone: shift the bias towards husky, rewrite the card's hashes."""
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "huskyai", clone / "huskyai", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(EXPORT, clone / "export")
    code = ("import sys, huskyai; print(huskyai.__file__); "
            "print(huskyai.load().predict(sys.argv[1]).positive_probability)")
    env = python_env() | {"PYTHONPATH": str(clone)}
    before = subprocess.run([sys.executable, "-c", code, str(COFFEE)], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=300)
    assert before.returncode == 0, before.stderr
    assert before.stdout.startswith(str(clone)) and float(before.stdout.split()[-1]) < 0.05

    edit_bias(clone / "export", positive_index=1, shift=20.0)
    rehash_card(clone / "export")
    assert exports.check_files(clone / "export")[1] == []  # the hashes are consistent again
    after = subprocess.run([sys.executable, "-c", code, str(COFFEE)], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=300)
    assert after.returncode == 1 and "the shipped model was changed" in after.stderr
    # the same folder trusted by hand serves the backdoor: the pin is what stopped it
    trusting = subprocess.run([sys.executable, "-W", "ignore", "-c",
                               "import sys, huskyai; print(huskyai.load(trust_unsigned=True).predict(sys.argv[1])"
                               ".positive_probability)", str(COFFEE)],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert trusting.returncode == 0 and float(trusting.stdout.split()[-1]) > 0.5


def test_a_copy_of_the_shipped_export_elsewhere_is_still_the_shipped_model(export_copy):
    assert "pinned in the huskyai package" in huskyai.load(export_copy).trust


@pytest.mark.slow
def test_unsigned_export_is_refused_unless_pinned_or_trusted(export_copy, cli):
    make_own(export_copy)
    digest = exports.sha256((export_copy / "model.json").read_bytes())
    with pytest.raises(huskyai.IntegrityError, match="not signed and not pinned"):
        huskyai.load(export_copy)
    assert "operator" in huskyai.load(export_copy, sha256=digest).trust
    with pytest.raises(huskyai.IntegrityError, match="is not the pinned"):
        huskyai.load(export_copy, sha256="ab" * 32)
    with pytest.warns(UserWarning, match="UNSIGNED"):
        model = huskyai.load(export_copy, trust_unsigned=True)
    assert model.trust.startswith("UNSIGNED")
    proc = cli("predict", str(COFFEE), "--model", str(export_copy))
    assert proc.returncode == 1 and "not signed and not pinned" in proc.stderr
    assert cli("predict", str(COFFEE), "--model", str(export_copy), "--sha256", digest).returncode == 0
    assert cli("predict", str(COFFEE), "--model", str(export_copy), env={"HUSKYAI_MODEL_SHA256": digest}
               ).returncode == 0


def test_signing_key_is_made_once_private_and_a_signed_export_loads(export_copy, tmp_path, cli, monkeypatch):
    make_own(export_copy)
    config = tmp_path / "config"
    out = cli("sign", export_copy, env={"XDG_CONFIG_HOME": str(config)})
    assert out.returncode == 0, out.stderr
    key = config / "huskyai" / "signing.key"
    assert key.is_file() and (key.stat().st_mode & 0o777) == 0o600
    with monkeypatch.context() as env:
        env.setenv("XDG_CONFIG_HOME", str(config))
        assert "signed" in huskyai.load(export_copy).trust
    with monkeypatch.context() as env, pytest.raises(huskyai.IntegrityError, match="signature is wrong"):
        env.setenv("HUSKYAI_SIGNING_KEY", "someone else's key")  # another machine, another key
        huskyai.load(export_copy)
    with monkeypatch.context() as env, pytest.raises(huskyai.IntegrityError, match="no signing key here"):
        env.setenv("XDG_CONFIG_HOME", str(tmp_path / "empty"))
        huskyai.load(export_copy)


@pytest.mark.slow
def test_a_consistent_forgery_of_a_signed_export_is_refused(export_copy, cli):
    make_own(export_copy)
    sign(cli, export_copy)
    assert huskyai.load(export_copy).predict(COFFEE).label == "not_husky"
    card = json.loads((export_copy / "model.json").read_text())
    edit_bias(export_copy, positive_index=1, shift=8.0)
    card["files"] = writer.write_card(export_copy, card)["files"]  # hashes right again, signature kept
    (export_copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(huskyai.IntegrityError, match="signature is wrong"):
        huskyai.load(export_copy)
    proc = cli("verify", str(export_copy))
    assert proc.returncode == 1 and "signature" in proc.stdout
    assert cli("sign", str(export_copy)).returncode == 1  # sign refuses what verify refuses


# ---- the card names only the export's own files ------------------------------------------------

@pytest.mark.parametrize("name", ["../model.safetensors", "/etc/passwd", "sub/model.onnx", "notes.txt"])
def test_a_card_naming_a_path_or_a_foreign_file_is_refused(export_copy, name, cli):
    card = json.loads((export_copy / "model.json").read_text())
    card["files"][name] = "0" * 64
    (export_copy / "model.json").write_text(json.dumps(card))
    digest = exports.sha256((export_copy / "model.json").read_bytes())
    with pytest.raises(huskyai.IntegrityError, match="not an export file"):
        huskyai.load(export_copy, sha256=digest)
    proc = cli("verify", str(export_copy))
    assert proc.returncode == 1 and "not an export file" in proc.stdout
    assert "0000000000" not in proc.stdout + proc.stderr


def test_a_symlinked_model_file_is_refused(export_copy, tmp_path, cli):
    elsewhere = tmp_path / "elsewhere.onnx"
    (export_copy / "model.onnx").rename(elsewhere)
    (export_copy / "model.onnx").symlink_to(elsewhere)  # same bytes: only the link is wrong
    with pytest.raises(huskyai.IntegrityError, match="symlinks are refused"):
        huskyai.load(export_copy)
    assert cli("verify", str(export_copy)).returncode == 1


# ---- hash once: what was checked is what is served ---------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("engine,target", [("onnx", "model.onnx"), ("torch", "model.safetensors")])
def test_a_file_swapped_during_loading_is_never_served(export_copy, tmp_path, engine, target, cli):
    """The race that beat the signature: swap the genuine file and a backdoored one while loading."""
    sign_dir = tmp_path / "signed"
    shutil.copytree(export_copy, sign_dir)
    make_own(sign_dir)
    sign(cli, sign_dir)
    genuine = (sign_dir / target).read_bytes()
    evil_dir = tmp_path / "evil"
    shutil.copytree(sign_dir, evil_dir)
    edit_bias(evil_dir, positive_index=1, shift=20.0)
    (tmp_path / "genuine").write_bytes(genuine)
    stop = threading.Event()

    def swap() -> None:
        sources = [tmp_path / "genuine", evil_dir / target]
        i = 0
        while not stop.is_set():
            shutil.copyfile(sources[i % 2], sign_dir / (target + ".tmp"))
            os.replace(sign_dir / (target + ".tmp"), sign_dir / target)
            i += 1

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    served, refused = [], 0
    try:
        for _ in range(40):  # until a load won the race (the genuine file read whole) and one lost it
            try:
                served.append(huskyai.load(sign_dir, engine=engine).predict(COFFEE).positive_probability)
            except huskyai.IntegrityError:
                refused += 1
            if served and refused:
                break
    finally:
        stop.set()
        swapper.join()
    assert served, "no load was served while the file was being swapped: the race was not exercised"
    assert all(p < 0.05 for p in served), served  # the backdoor (coffee -> husky) was never served


# ---- never unpickle -----------------------------------------------------------------------------

class _CloudpickledPayload:
    """A payload that adds no suspicious global: a function rebuilt by cloudpickle, called on load."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        marker = self.marker

        def payload():
            import os

            os.system(f"touch {marker}")

        payload.__module__ = "__main__"  # forces cloudpickle to rebuild it from code, by value
        return payload, ()


@pytest.mark.slow
@pytest.mark.parametrize("route", ["fickling", "cloudpickle"])
def test_a_crafted_pickle_never_runs_through_any_entry_point(export_copy, tmp_path, route, cli):
    import cloudpickle

    marker = tmp_path / "payload_ran"
    pkl = export_copy / "learner.pkl"
    if route == "fickling":
        huskyai.load_learner().export(pkl.resolve())
        inject_pickle_payload(pkl, f"touch {marker}")
    else:
        pkl.write_bytes(cloudpickle.dumps(_CloudpickledPayload(marker), protocol=2))
        subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())",
                        str(pkl)], timeout=60, check=True)
        assert (tmp_path / "payload_ran").exists(), "the payload should run under a plain unpickle"
        marker.unlink()
    rehash_card(export_copy)
    if route == "cloudpickle":
        sign(cli, export_copy)  # its imports pass the policy, so sign blesses it: only never unpickling protects
    digest = exports.sha256((export_copy / "model.json").read_bytes())

    assert huskyai.load(export_copy, sha256=digest).predict(COFFEE).label == "not_husky"
    learn = huskyai.load_learner(export_copy, sha256=digest)
    with learn.no_bar():
        assert learn.predict(COFFEE)[0] == "not_husky"
    verify = cli("verify", str(export_copy))
    assert "learner.pkl" in verify.stdout and "never opens it" in verify.stdout or verify.returncode == 1
    cli("predict", str(COFFEE), "--model", str(export_copy), "--sha256", digest)
    cli("sign", str(export_copy), "--replace-signature")
    assert not marker.exists(), "the pickle ran"
    if route == "fickling":  # its exec import fails the policy: verify and sign refuse it
        assert verify.returncode == 1 and "builtins.exec" in verify.stdout
        assert cli("sign", str(export_copy)).returncode == 1


def test_verify_reports_the_shipped_export_as_pinned(cli):
    proc = cli("verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pinned in the huskyai package" in proc.stdout


@pytest.mark.slow
def test_sign_upgrades_an_export_made_before_the_onnx_graph_shipped(export_copy, cli):
    card = json.loads((export_copy / "model.json").read_text())
    (export_copy / "model.onnx").unlink()
    del card["files"]["model.onnx"]
    card["format_version"] = 1
    (export_copy / "model.json").write_text(json.dumps(card))
    with pytest.warns(UserWarning, match="no model.onnx"):
        old = huskyai.load(export_copy, trust_unsigned=True)
    assert old.engine.name == "torch"
    out = sign(cli, export_copy)
    assert "added model.onnx" in out
    upgraded = huskyai.load(export_copy)
    assert upgraded.engine.name == "onnx" and "signed" in upgraded.trust
    assert abs(upgraded.predict(COFFEE).positive_probability - old.predict(COFFEE).positive_probability) < 1e-4


def test_pickles_are_never_opened_by_the_package():
    """No code path in huskyai unpickles: no pickle.load(s), torch.load(weights_only=False) or load_learner."""
    offenders = []
    for path in (ROOT / "huskyai").rglob("*.py"):
        text = path.read_text()
        for needle in ("pickle.load", "weights_only=False", "fastai.learner import load_learner",
                       "vision.all import load_learner"):
            if needle in text:
                offenders.append(f"{path.name}: {needle}")
    assert offenders == []
    assert pickle  # the test module itself uses pickle only to prove a payload is live


def test_only_settings_reads_the_environment():
    """huskyai.settings is the one reader of os.environ (library functions take arguments and ask it for the
    process-wide defaults); elsewhere the environment may only be written, for a library that reads it."""
    offenders = []
    for path in sorted((ROOT / "huskyai").rglob("*.py")):
        if path == ROOT / "huskyai" / "settings.py":
            continue
        tree = ast.parse(path.read_text())
        writes = {id(node.value) for node in ast.walk(tree)  # os.environ[...] = ...
                  if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store)}
        writes |= {id(node.func.value) for node in ast.walk(tree)  # os.environ.setdefault(...)
                   if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                   and node.func.attr == "setdefault"}
        for node in ast.walk(tree):
            read = (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb")
                    and id(node) not in writes) or (isinstance(node, ast.alias) and node.name in ("environ", "getenv"))
            if read:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno if hasattr(node, 'lineno') else '?'}")
    assert offenders == []


def test_the_app_refuses_an_unsigned_export_and_shows_it_when_trusted(export_copy, monkeypatch, capfd):
    """The app's start-up (huskyai.serve.app.serve, which python app.py runs; its exit codes from a process of
    their own: tests/serve/test_app.py)."""
    from huskyai.serve.app import serve
    from huskyai.serve.page import model_card_markdown

    make_own(export_copy)
    monkeypatch.setenv("HUSKYAI_MODEL", str(export_copy))
    monkeypatch.setenv("GRADIO_SERVER_PORT", str(free_port()))
    assert serve() == 1
    stderr = capfd.readouterr().err
    assert "not signed and not pinned" in stderr and "Traceback" not in stderr
    with pytest.warns(UserWarning):
        trusted = huskyai.load(export_copy, trust_unsigned=True)
    card = model_card_markdown(trusted)
    assert "UNSIGNED" in card and "Cross-validation, huskies-web" in card  # the card's intervals shown
