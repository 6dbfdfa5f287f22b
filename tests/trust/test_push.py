"""`huskyai push`, as far as the Hub client goes without a network: what it would upload (checked, staged, its
README's metadata read back by huggingface_hub), that it refuses what verify refuses and never uploads a pickle,
and that what it stages loads back from a Hub cache."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from trust.helpers import fill_cache, new_key_pair, offline_hub, tiny_export

from conftest import python_env
from huskyai.api import push
from huskyai.errors import IntegrityError
from huskyai.trust import exports, writer
from huskyai.trust.signing import sign_with_key


@pytest.fixture
def team(tmp_path):
    folder = tmp_path / "keys"
    folder.mkdir()
    return new_key_pair(folder, "team")


@pytest.fixture
def signed(tmp_path, team):
    export = tiny_export(tmp_path / "export")
    (export / "notes.txt").write_text("a stray file: not the model's")
    sign_with_key(export, team[0])
    return export


def test_a_dry_run_stages_the_card_its_files_the_signature_and_a_readme_only(tmp_path, team, signed):
    from huggingface_hub import ModelCard

    done = push(signed, "team/husky", public_key=team[1], dry_run=True, stage=tmp_path / "stage")
    assert done.commit is None and done.source == "hf://team/husky"
    assert list(done.files) == ["model.json", "confusion_matrix.png", "redteam.json", "model.sig", "README.md"]
    assert sorted(p.name for p in (tmp_path / "stage").iterdir()) == sorted(done.files)
    for name in ("model.json", "confusion_matrix.png", "redteam.json", "model.sig"):
        assert (tmp_path / "stage" / name).read_bytes() == (signed / name).read_bytes()
    readme = ModelCard.load(tmp_path / "stage" / "README.md")  # the Hub's own reader of its metadata block
    assert readme.data.library_name == "huskyai" and readme.data.pipeline_tag == "image-classification"
    assert readme.data.license == "mit" and "no-pickle" in readme.data.tags
    assert done.card_sha256 in readme.text and 'public_key="signer.pub"' in readme.text
    assert "model_signing verify key" in readme.text
    assert exports.open_export(tmp_path / "stage", public_key=team[1]).trust.startswith("signed by key")


def test_what_push_stages_loads_back_from_a_hub_cache(tmp_path, team, signed, monkeypatch):
    done = push(signed, "team/husky", public_key=team[1], dry_run=True)
    cache = offline_hub(monkeypatch, tmp_path / "hf" / "hub")
    fill_cache(cache, "team/husky", done.files)  # the repository as the commit would leave it
    opened = exports.open_export("hf://team/husky", public_key=team[1])
    assert opened.card_sha256 == done.card_sha256 and opened.origin.startswith("hf://team/husky@")


def test_push_refuses_what_verify_refuses(tmp_path, team, signed):
    with pytest.raises(IntegrityError, match="no public key was given"):
        push(signed, "team/husky", dry_run=True)  # nobody vouches for it without the key
    (signed / "redteam.json").write_text('{"all_refused": false}')
    with pytest.raises(IntegrityError, match="redteam.json: sha256 .* does not match"):
        push(signed, "team/husky", public_key=team[1], dry_run=True)
    with pytest.raises(IntegrityError, match="not a Hub repository id"):
        push(signed, "team/../husky", public_key=team[1], dry_run=True)


def test_push_never_uploads_a_pickle_and_never_a_stale_signature(tmp_path, team):
    export = tiny_export(tmp_path / "export")
    (export / exports.LEARNER_NAME).write_bytes(b"cos\nsystem\n(S'echo'\ntR.")
    writer.write_card(export, json.loads((export / "model.json").read_text()))  # the card lists learner.pkl
    digest = exports.sha256((export / "model.json").read_bytes())
    with pytest.raises(IntegrityError, match="learner.pkl|picklescan|pickle"):
        push(export, "team/husky", sha256=digest, dry_run=True)
    fresh = tiny_export(tmp_path / "fresh")
    sign_with_key(fresh, team[0])
    writer.write_card(fresh, json.loads((fresh / "model.json").read_text()) | {"name": "renamed"})
    digest = exports.sha256((fresh / "model.json").read_bytes())
    with pytest.raises(IntegrityError, match="does not sign this card"):
        push(fresh, "team/husky", sha256=digest, dry_run=True)  # pinned, but its model.sig is for the old card


def test_an_upload_that_cannot_reach_the_hub_is_one_line(tmp_path, team, signed, monkeypatch):
    offline_hub(monkeypatch, tmp_path / "hf" / "hub")
    with pytest.raises(IntegrityError, match="the upload to the Hugging Face Hub failed") as err:
        push(signed, "team/husky", public_key=team[1], token="hf_not_a_token")
    assert "\n" not in str(err.value)


def test_the_push_command_lists_what_it_would_upload(tmp_path, team, signed, cli):
    proc = cli("push", signed, "team/husky", "--public-key", team[1], "--dry-run")
    assert proc.returncode == 0, proc.stderr
    listed = [line.split("\t")[1] for line in proc.stdout.splitlines() if line.startswith("would upload")]
    assert listed == ["model.json", "confusion_matrix.png", "redteam.json", "model.sig", "README.md"]
    assert "dry run: nothing uploaded" in proc.stdout


def test_an_upload_to_a_hub_that_does_not_answer_is_one_line_from_the_command(tmp_path, team, signed):
    """Online but nobody answering (here: a closed loopback port as the Hub): huggingface_hub's own HTTP client
    raises errors that are not OSError; the command still says so in one line, exit 1, no traceback. A process of
    its own: huggingface_hub reads HF_ENDPOINT as it imports."""
    from conftest import free_port

    env = python_env() | {"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "HF_HUB_OFFLINE": "0",
                          "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": "hf_not_a_token"}
    proc = subprocess.run([sys.executable, "-m", "huskyai", "push", str(signed), "team/husky", "--public-key",
                           str(team[1])], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "the upload to the Hugging Face Hub failed" in proc.stderr
