"""OMS signatures (model.sig, through model-signing): one machine signs with a private key, any other checks with
the public key alone; the signature is checked before a byte of the model is parsed, and interoperates with the
model_signing command and API both ways."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from trust.helpers import new_key_pair, own_copy, tiny_export

import huskyai
from conftest import ROOT
from huskyai.errors import IntegrityError, UnsignedError
from huskyai.trust import exports, oms, writer
from huskyai.trust.signing import sign_with_key, verify

COFFEE = ROOT / "examples" / "coffee.jpg"


def der_fingerprint(public: Path) -> str:
    key = serialization.load_pem_public_key(public.read_bytes())
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


@pytest.fixture
def keys(tmp_path) -> dict[str, Path]:
    folder = tmp_path / "keys"
    folder.mkdir()
    team, team_pub = new_key_pair(folder, "team")
    other, other_pub = new_key_pair(folder, "other")
    return {"team": team, "team_pub": team_pub, "other": other, "other_pub": other_pub}


# ---- one machine signs, another verifies with the public key alone --------------------------------------------

@pytest.mark.slow
def test_signed_on_one_machine_loads_on_another_with_only_the_public_key(tmp_path, keys, cli):
    export = own_copy(tmp_path)
    signer = {"XDG_CONFIG_HOME": str(tmp_path / "signer-config")}
    done = cli("sign", str(export), "--key", str(keys["team"]), env=signer)
    assert done.returncode == 0, done.stderr
    fingerprint = der_fingerprint(keys["team_pub"])
    assert f"key {fingerprint}" in done.stdout and "model_signing verify key" in done.stdout
    assert not (tmp_path / "signer-config" / "huskyai" / "signing.key").exists()  # no HMAC key made or needed
    card_before = (export / "model.json").read_bytes()

    elsewhere = {"XDG_CONFIG_HOME": str(tmp_path / "other-machine"), "HUSKYAI_AUDIT_LOG": str(tmp_path / "a.jsonl")}
    proc = cli("predict", str(COFFEE), "--model", str(export), "--public-key", str(keys["team_pub"]), env=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert "not_husky" in proc.stdout
    line = json.loads((tmp_path / "a.jsonl").read_text().splitlines()[-1])
    assert line["trust"] == f"signed by key {fingerprint}"  # the fifth reason, in the audit log
    assert line["model_sha256"] == exports.sha256(card_before)
    env_key = cli("verify", str(export), env=elsewhere | {"HUSKYAI_MODEL_PUBLIC_KEY": str(keys["team_pub"])})
    assert env_key.returncode == 0 and f"OK   trusted: signed by key {fingerprint}" in env_key.stdout
    wrong = cli("predict", str(COFFEE), "--model", str(export), "--public-key", str(keys["other_pub"]), env=elsewhere)
    assert wrong.returncode == 1 and "signed by another key" in wrong.stderr and "Traceback" not in wrong.stderr
    without = cli("predict", str(COFFEE), "--model", str(export), env=elsewhere)
    assert without.returncode == 1 and "--public-key" in without.stderr  # says how to load it
    assert (export / "model.json").read_bytes() == card_before  # signing with a key leaves the card as it was


def test_the_fingerprint_is_the_public_keys_der_sha256(tmp_path, keys):
    export = tiny_export(tmp_path / "tiny")
    signed = sign_with_key(export, keys["team"])
    assert signed.fingerprint == der_fingerprint(keys["team_pub"])
    assert signed.signed == sorted(["model.json", "redteam.json", "confusion_matrix.png"])
    opened = exports.open_export(export, public_key=keys["team_pub"])
    assert opened.trust == f"signed by key {signed.fingerprint}"
    assert opened.signature == (export / "model.sig").read_bytes()
    assert exports.open_export(export, public_key=keys["team_pub"].read_bytes()).trust == opened.trust  # PEM bytes


# ---- interoperability with the model-signing package ----------------------------------------------------------

def test_an_export_signed_by_huskyai_verifies_with_the_model_signing_command_and_api(tmp_path, keys):
    from model_signing import hashing, verifying

    export = tiny_export(tmp_path / "tiny")
    (export / "notes.txt").write_text("not part of the model")  # in the folder when it was signed: left out
    sign_with_key(export, keys["team"])
    proc = subprocess.run([Path(sys.executable).parent / "model_signing", "verify", "key", str(export), "--signature",
                           str(export / "model.sig"), "--public_key", str(keys["team_pub"])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Verification succeeded" in proc.stdout, proc.stdout + proc.stderr
    verifying.Config().use_elliptic_key_verifier(public_key=keys["team_pub"]).set_hashing_config(
        hashing.Config().set_ignored_paths(paths=["model.sig"])).verify(export, export / "model.sig")
    (export / "redteam.json").write_text('{"all_refused": false}')  # one changed byte: a hash mismatch, by name
    with pytest.raises(ValueError, match=r"Hash mismatch for .{0,4}redteam.json"):
        verifying.Config().use_elliptic_key_verifier(public_key=keys["team_pub"]).verify(export, export / "model.sig")


@pytest.mark.parametrize("how", ["command", "api"])
def test_an_export_signed_by_model_signing_itself_loads(tmp_path, keys, how):
    from model_signing import hashing, signing

    export = tiny_export(tmp_path / "tiny")
    if how == "command":
        proc = subprocess.run([Path(sys.executable).parent / "model_signing", "sign", "key", str(export),
                               "--signature", str(export / "model.sig"), "--private_key", str(keys["team"])],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
    else:
        signing.Config().use_elliptic_key_signer(private_key=keys["team"]).set_hashing_config(
            hashing.Config().set_ignored_paths(paths=[export / "model.sig"])).sign(export, export / "model.sig")
    assert exports.open_export(export, public_key=keys["team_pub"]).trust.startswith("signed by key ")
    with pytest.raises(IntegrityError, match="signed by another key"):
        exports.open_export(export, public_key=keys["other_pub"])


@pytest.mark.slow
def test_a_model_signed_by_the_model_signing_command_predicts(tmp_path, keys):
    export = own_copy(tmp_path)
    proc = subprocess.run([Path(sys.executable).parent / "model_signing", "sign", "key", str(export), "--signature",
                           str(export / "model.sig"), "--private_key", str(keys["team"])],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    model = huskyai.load(export, public_key=keys["team_pub"])
    assert model.trust == f"signed by key {der_fingerprint(keys['team_pub'])}"
    assert model.predict(COFFEE).label == "not_husky"


# ---- refused before a byte is parsed ---------------------------------------------------------------------------

def test_a_signature_from_another_key_is_refused_before_the_card_is_read(tmp_path, keys):
    export = tiny_export(tmp_path / "tiny")
    sign_with_key(export, keys["other"])
    (export / "model.json").write_bytes(b"\x00 not JSON at all")  # never read: the signature fails first
    with pytest.raises(IntegrityError, match="signed by another key") as err:
        exports.open_export(export, public_key=keys["team_pub"])
    assert "JSON" not in str(err.value)


def test_a_card_or_file_changed_after_signing_is_refused_before_it_is_parsed(tmp_path, keys):
    export = tiny_export(tmp_path / "tiny")
    sign_with_key(export, keys["team"])
    good_card = (export / "model.json").read_bytes()
    (export / "model.json").write_bytes(b"{ broken")  # not the signed card: refused on its bytes, before JSON
    with pytest.raises(IntegrityError, match="not the card that model.sig signs"):
        exports.open_export(export, public_key=keys["team_pub"])
    (export / "model.json").write_bytes(good_card)
    (export / "redteam.json").write_text('{"all_refused": false}')  # a listed file: its hash, before use
    with pytest.raises(IntegrityError, match="redteam.json: sha256 .* does not match"):
        exports.open_export(export, public_key=keys["team_pub"])
    writer.write_card(export, json.loads(good_card))  # the card rehashed to the changed file: not the signed card
    with pytest.raises(IntegrityError, match="not the card that model.sig signs"):
        exports.open_export(export, public_key=keys["team_pub"])


def test_a_statement_edited_inside_the_bundle_is_refused(tmp_path, keys):
    import base64

    export = tiny_export(tmp_path / "tiny")
    sign_with_key(export, keys["team"])
    bundle = json.loads((export / "model.sig").read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "0" * 64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (export / "model.sig").write_text(json.dumps(bundle))
    with pytest.raises(IntegrityError, match="does not verify with key"):
        exports.open_export(export, public_key=keys["team_pub"])
    (export / "model.sig").write_text("not a bundle")
    with pytest.raises(IntegrityError, match="not an OMS signature bundle"):
        exports.open_export(export, public_key=keys["team_pub"])


def test_a_signature_that_leaves_out_a_listed_file_is_refused(tmp_path, keys):
    from model_signing import hashing, signing

    export = tiny_export(tmp_path / "tiny")
    signing.Config().use_elliptic_key_signer(private_key=keys["team"]).set_hashing_config(
        hashing.Config().set_ignored_paths(paths=[export / "model.sig", export / "redteam.json"])
    ).sign(export, export / "model.sig")
    with pytest.raises(IntegrityError, match="does not cover redteam.json"):
        exports.open_export(export, public_key=keys["team_pub"])


# ---- which signature wins ---------------------------------------------------------------------------------------

def test_a_public_key_given_means_model_sig_must_verify_whatever_else_vouches(tmp_path, keys, monkeypatch):
    export = tiny_export(tmp_path / "tiny")
    monkeypatch.setenv("HUSKYAI_SIGNING_KEY", "this machine's key")
    writer.save_card(export, json.loads((export / "model.json").read_text()), b"this machine's key")  # HMAC
    assert exports.open_export(export).trust == "signed with this machine's key (HMAC-SHA256)"
    with pytest.raises(IntegrityError, match="no model.sig, but a public key was given"):
        exports.open_export(export, public_key=keys["team_pub"])  # the HMAC cannot stand in for it
    sign_with_key(export, keys["other"])
    with pytest.raises(IntegrityError, match="signed by another key"):
        exports.open_export(export, public_key=keys["team_pub"])
    assert exports.open_export(export).trust.startswith("signed with this machine's key")  # no key: HMAC decides
    sign_with_key(export, keys["team"])
    digest = exports.sha256((export / "model.json").read_bytes())
    assert exports.open_export(export, public_key=keys["team_pub"], sha256=digest).trust.startswith("signed by key")
    with pytest.raises(IntegrityError, match="is not the pinned"):  # a pin given with a key must hold too
        exports.open_export(export, public_key=keys["team_pub"], sha256="ab" * 32)
    monkeypatch.setenv("HUSKYAI_MODEL_PUBLIC_KEY", str(keys["other_pub"]))  # the process-wide key, every door
    with pytest.raises(IntegrityError, match="signed by another key"):
        exports.open_export(export)
    assert not verify(export).ok
    with pytest.raises(IntegrityError, match="no model.sig"):
        huskyai.load()  # the shipped model carries no OMS signature


def test_without_a_key_model_sig_is_named_but_never_trusted(tmp_path, keys):
    export = tiny_export(tmp_path / "tiny")
    sign_with_key(export, keys["team"])
    with pytest.raises(UnsignedError, match="carries an OMS signature .* no public key was given"):
        exports.open_export(export)
    result = verify(export, trust_unsigned=True)
    assert result.ok and any("model.sig: an OMS signature, not checked" in f for f in result.findings)


def test_model_sig_is_a_known_name_but_never_one_the_card_lists(tmp_path, keys):
    export = tiny_export(tmp_path / "tiny")
    card = json.loads((export / "model.json").read_text())
    card["files"]["model.sig"] = "0" * 64
    (export / "model.json").write_text(json.dumps(card))
    with pytest.raises(IntegrityError, match="not an export file"):
        exports.open_export(export, trust_unsigned=True)
    (export / "model.sig").symlink_to(tmp_path / "elsewhere.sig")  # the one writer refuses a planted link
    writer.write_card(export, {"name": "tiny"})
    with pytest.raises(IntegrityError, match="is a symlink"):
        sign_with_key(export, keys["team"])


def test_signing_with_this_machines_key_keeps_an_oms_signature_true(tmp_path, keys, monkeypatch):
    from huskyai.trust import signing

    export = tiny_export(tmp_path / "tiny")
    monkeypatch.setenv("HUSKYAI_SIGNING_KEY", "this machine's key")
    sign_with_key(export, keys["team"])
    with pytest.raises(IntegrityError, match="model.sig: an OMS signature of this card"):
        signing.sign(export)  # the HMAC would rewrite the card that model.sig signs
    assert exports.open_export(export, public_key=keys["team_pub"]).trust.startswith("signed by key")
    signing.sign(export, key_signature_follows=True)  # what sign --key does when the card must change...
    with pytest.raises(IntegrityError, match="not the card that model.sig signs"):
        exports.open_export(export, public_key=keys["team_pub"])
    sign_with_key(export, keys["team"])  # ...then it signs again
    assert exports.open_export(export, public_key=keys["team_pub"]).trust.startswith("signed by key")
    assert exports.open_export(export).trust.startswith("signed with this machine's key")  # both hold


@pytest.mark.slow
def test_sign_with_a_key_and_a_card_change_signs_with_both(tmp_path, keys, cli):
    export = own_copy(tmp_path)
    card = json.loads((export / "model.json").read_text())
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"weights_sha256": card["files"]["model.safetensors"], "all_refused": True}))
    config = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = cli("sign", str(export), "--key", str(keys["team"]), "--report", str(summary), env=config)
    assert done.returncode == 0, done.stderr
    assert "redteam.json" in json.loads((export / "model.json").read_text())["files"]
    check = cli("verify", str(export), "--public-key", str(keys["team_pub"]), env=config)
    assert check.returncode == 0 and "trusted: signed by key" in check.stdout
    assert "HMAC" in cli("verify", str(export), env=config).stdout  # made on this machine, too


def test_an_encrypted_private_key_needs_its_password(tmp_path, keys):
    key = serialization.load_pem_private_key(keys["team"].read_bytes(), None)
    locked = tmp_path / "locked.pem"
    locked.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"secret")))
    export = tiny_export(tmp_path / "tiny")
    with pytest.raises(IntegrityError, match="encrypted"):
        sign_with_key(export, locked)
    with pytest.raises(IntegrityError, match="wrong password"):
        sign_with_key(export, locked, b"guess")
    assert sign_with_key(export, locked, b"secret").fingerprint == der_fingerprint(keys["team_pub"])


def test_keys_that_are_not_ec_public_keys_are_named(tmp_path, keys):
    export = tiny_export(tmp_path / "tiny")
    sign_with_key(export, keys["team"])
    with pytest.raises(IntegrityError, match="that is a private key: give its public half"):
        exports.open_export(export, public_key=keys["team"])
    with pytest.raises(IntegrityError, match="cannot read the public key"):
        exports.open_export(export, public_key=tmp_path / "missing.pub")
    assert oms.fingerprint(keys["team_pub"].read_bytes()) == der_fingerprint(keys["team_pub"])


def test_a_new_training_run_removes_the_old_models_signature(tmp_path, keys):
    out = tiny_export(tmp_path / "out", "old")
    sign_with_key(out, keys["team"])
    stage = tiny_export(tmp_path / "stage", "new")
    writer.move_into_place(stage, out)
    assert not (out / "model.sig").exists()  # it signed the old card
    assert json.loads((out / "model.json").read_text())["name"] == "new"


@pytest.mark.slow
def test_score_and_evaluate_take_the_public_key_too(tmp_path, keys, cli):
    export = own_copy(tmp_path)
    sign_with_key(export, keys["team"])
    out = tmp_path / "scores.csv"
    scored = cli("score", str(COFFEE), "--out", str(out), "--workers", "0", "--no-progress", "--model", str(export),
                 "--public-key", str(keys["team_pub"]))
    assert scored.returncode == 0, scored.stderr
    assert exports.sha256((export / "model.json").read_bytes()) in out.read_text()
    data = tmp_path / "data"
    for label, photo in (("husky", "chelsea.jpg"), ("not_husky", "coffee.jpg")):
        (data / label).mkdir(parents=True)
        (data / label / photo).write_bytes((ROOT / "examples" / photo).read_bytes())
    evaluated = cli("evaluate", str(data), "--json", "--model", str(export), "--public-key", str(keys["other_pub"]))
    assert evaluated.returncode == 1 and "signed by another key" in evaluated.stderr
    evaluated = cli("evaluate", str(data), "--json", "--model", str(export), "--public-key", str(keys["team_pub"]))
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["n"] == 2


def test_the_app_reads_its_public_key_from_the_environment(monkeypatch, keys):
    from huskyai.settings import Settings

    assert Settings.from_env().public_key is None
    monkeypatch.setenv("HUSKYAI_MODEL_PUBLIC_KEY", str(keys["team_pub"]))
    monkeypatch.setenv("HUSKYAI_MODEL", "hf://team/husky@main")
    settings = Settings.from_env()
    assert settings.public_key == str(keys["team_pub"]) and settings.model_dir == "hf://team/husky@main"
