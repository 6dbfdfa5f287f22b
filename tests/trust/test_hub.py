"""Models from the Hugging Face Hub, without the internet: a cache filled in huggingface_hub's own layout, read
through the library's offline path (HF_HUB_OFFLINE=1), so the code that runs online is the code under test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from trust.helpers import export_files, fill_cache, new_key_pair, offline_hub, own_copy, tiny_export

import huskyai
from conftest import ROOT, commands_in_a_process, python_env
from huskyai.errors import IntegrityError, UnsignedError
from huskyai.redteam.hubcache import repo_path
from huskyai.trust import exports
from huskyai.trust.signing import sign_with_key, verify

COFFEE = ROOT / "examples" / "coffee.jpg"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def team(tmp_path) -> tuple[Path, Path]:
    folder = tmp_path / "keys"
    folder.mkdir()
    return new_key_pair(folder, "team")


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    return offline_hub(monkeypatch, tmp_path / "hf" / "hub")


def signed_tiny(tmp_path: Path, private: Path) -> Path:
    export = tiny_export(tmp_path / "tiny")
    sign_with_key(export, private)
    return export


def test_the_test_cache_is_in_the_librarys_own_layout(tmp_path, team, hub):
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    snapshot = fill_cache(hub, "team/husky", export_files(signed_tiny(tmp_path, team[0])), COMMIT)
    (repo,) = scan_cache_dir(hub).repos
    (revision,) = repo.revisions
    assert (repo.repo_id, revision.commit_hash, revision.refs) == ("team/husky", COMMIT, frozenset({"main"}))
    assert {f.file_name for f in revision.files} == {"model.json", "model.sig", "redteam.json",
                                                     "confusion_matrix.png"}
    assert try_to_load_from_cache("team/husky", "model.json") == str(snapshot / "model.json")
    assert os.readlink(snapshot / "model.json").startswith("../../blobs/")


def test_a_hub_model_loads_through_the_librarys_offline_path_and_names_its_commit(tmp_path, team, hub):
    export = signed_tiny(tmp_path, team[0])
    fill_cache(hub, "team/husky", export_files(export), COMMIT)
    for source in ("hf://team/husky", "hf://team/husky@main", f"hf://team/husky@{COMMIT}"):
        opened = exports.open_export(source, public_key=team[1])
        assert opened.origin == f"hf://team/husky@{COMMIT}"  # the revision, resolved to a commit
        assert opened.trust.startswith("signed by key ") and opened.trust.endswith(f"from hf://team/husky@{COMMIT}")
        assert opened.files[exports.REDTEAM_NAME] == (export / exports.REDTEAM_NAME).read_bytes()
    digest = exports.sha256((export / "model.json").read_bytes())
    assert exports.open_export("hf://team/husky", sha256=digest).trust.startswith("card sha256 pinned")
    with pytest.warns(UserWarning, match="UNSIGNED"):
        assert exports.open_export("hf://team/husky", trust_unsigned=True).trust.startswith("UNSIGNED")
    with pytest.raises(UnsignedError, match="no public key was given"):  # unpinned, unsigned: refused as a folder is
        exports.open_export("hf://team/husky")
    assert verify("hf://team/husky", public_key=team[1]).ok


def test_a_hub_source_that_cannot_be_had_is_one_line(hub):
    for source, message in [("hf://team/missing", "cannot be fetched from the Hugging Face Hub"),
                            ("hf://team/husky@v9", "cannot be fetched"),
                            ("hf://team--x/husky", "not a Hub repository id"),
                            ("hf://team/husky@../../etc", "not a revision"),
                            ("hf://husky", "not a Hub repository id")]:
        with pytest.raises(IntegrityError, match=message) as err:
            exports.open_export(source, trust_unsigned=True)
        assert "\n" not in str(err.value)


def test_a_tampered_blob_is_refused_as_a_tampered_file_is(tmp_path, team, hub):
    export = signed_tiny(tmp_path, team[0])
    snapshot = fill_cache(hub, "team/husky", export_files(export), COMMIT)
    blob = snapshot / os.readlink(snapshot / exports.REDTEAM_NAME)
    blob.write_text('{"all_refused": false}')  # the same commit, other bytes
    with pytest.raises(IntegrityError, match="redteam.json: sha256 .* does not match the model card"):
        exports.open_export(f"hf://team/husky@{COMMIT}", public_key=team[1])
    digest = exports.sha256((export / "model.json").read_bytes())
    card_blob = snapshot / os.readlink(snapshot / "model.json")
    card_blob.write_bytes(b"{ a card that is not JSON")  # the card changed under the commit: refused unparsed
    with pytest.raises(IntegrityError, match="not the card that model.sig signs"):
        exports.open_export(f"hf://team/husky@{COMMIT}", public_key=team[1])
    with pytest.raises(IntegrityError, match="is not the pinned"):
        exports.open_export(f"hf://team/husky@{COMMIT}", sha256=digest)


@pytest.mark.parametrize("target", ["outside", "absolute", "other_repo", "blob_link", "blobs_dir_link"])
def test_a_snapshot_link_out_of_the_cache_is_refused(tmp_path, team, hub, target):
    export = signed_tiny(tmp_path, team[0])
    snapshot = fill_cache(hub, "team/husky", export_files(export), COMMIT)
    other = fill_cache(hub, "mallory/husky", {exports.REDTEAM_NAME: (export / exports.REDTEAM_NAME).read_bytes()})
    genuine = (export / exports.REDTEAM_NAME).read_bytes()
    outside = tmp_path / "outside.json"
    outside.write_bytes(genuine)  # the right bytes, in the wrong place: the link itself is the fault
    link = snapshot / exports.REDTEAM_NAME
    blob_name = os.readlink(link).rsplit("/", 1)[1]
    if target == "blobs_dir_link":  # blobs/ itself swapped for a link to a folder outside the cache
        blobs = repo_path(hub, "team/husky") / "blobs"
        blobs.rename(tmp_path / "real_blobs")
        blobs.symlink_to(tmp_path / "real_blobs")
    elif target == "blob_link":  # the blob a link to a file outside
        blob = repo_path(hub, "team/husky") / "blobs" / blob_name
        blob.unlink()
        blob.symlink_to(outside)
    else:
        link.unlink()
        link.symlink_to({"outside": os.path.relpath(outside, snapshot), "absolute": str(outside),
                         "other_repo": os.path.relpath(other / exports.REDTEAM_NAME, snapshot)}[target])
    with pytest.raises(IntegrityError, match="outside its repository's blobs|cannot be opened safely") as err:
        exports.open_export(f"hf://team/husky@{COMMIT}", public_key=team[1])
    assert ("model.sig" if target == "blobs_dir_link" else "redteam.json") in str(err.value)  # the first read


def test_links_are_followed_only_in_a_hub_cache_snapshot(tmp_path, team):
    """A local folder laid out like a cache but not one (no snapshots/COMMIT in a models--* folder) keeps the
    rule: no symlinks."""
    export = signed_tiny(tmp_path, team[0])
    fake = tmp_path / "models--team--husky" / "snapshots" / "not-a-commit"
    fill_cache(tmp_path, "team/husky", export_files(export), COMMIT)
    (tmp_path / "models--team--husky" / "snapshots" / COMMIT).rename(fake)
    with pytest.raises(IntegrityError, match="symlinks are refused"):
        exports.open_export(fake, public_key=team[1])


def test_refs_that_do_not_name_a_commit_are_refused(tmp_path, team, hub):
    export = signed_tiny(tmp_path, team[0])
    fill_cache(hub, "team/husky", export_files(export), COMMIT)
    loose = tiny_export(tmp_path / "elsewhere" / "x")
    (repo_path(hub, "team/husky") / "refs" / "evil").write_text(os.path.relpath(loose, repo_path(hub, "team/husky")
                                                                                / "snapshots"))
    with pytest.raises(IntegrityError, match="not a commit's snapshot"):
        exports.open_export("hf://team/husky@evil", trust_unsigned=True)


def test_a_pickle_in_the_repository_is_never_fetched_and_a_card_naming_it_is_refused(tmp_path, team, hub):
    from huggingface_hub.utils import filter_repo_objects

    repo = ["model.json", "model.safetensors", "model.onnx", "model.sig", "README.md", "learner.pkl", "model.pkl",
            "pytorch_model.bin", "sub/model.onnx", ".gitattributes", "run.py"]
    fetched = set(filter_repo_objects(items=repo, allow_patterns=list(exports.HUB_NAMES)))  # snapshot_download's own
    assert fetched == {"model.json", "model.safetensors", "model.onnx", "model.sig"}
    export = tiny_export(tmp_path / "tiny")
    (export / exports.LEARNER_NAME).write_bytes(b"cos\nsystem\n(S'touch PAYLOAD'\ntR.")
    card = json.loads((export / "model.json").read_text())
    from huskyai.trust import writer

    card = writer.write_card(export, card)  # the attacker's card lists the pickle
    assert exports.LEARNER_NAME in card["files"]
    fill_cache(hub, "mallory/husky", export_files(export), COMMIT)
    digest = exports.sha256((export / "model.json").read_bytes())
    for trust in ({"trust_unsigned": True}, {"sha256": digest}):
        with pytest.raises(IntegrityError, match="whose card lists learner.pkl"):
            exports.open_export("hf://mallory/husky", **trust)
    assert not verify("hf://mallory/husky", trust_unsigned=True).ok
    assert exports.open_export(export, sha256=digest).files[exports.LEARNER_NAME]  # a local folder may list one


@pytest.mark.slow
def test_predict_and_verify_a_hub_model_in_a_fresh_process_with_only_the_environment(tmp_path, team):
    """HF_HUB_OFFLINE and HF_HUB_CACHE as a user sets them, read by the library as it imports: no patching."""
    export = own_copy(tmp_path)
    sign_with_key(export, team[0])
    cache = tmp_path / "hf" / "hub"
    fill_cache(cache, "team/husky", export_files(export), COMMIT)
    env = python_env() | {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "hf"),
                          "HUSKYAI_AUDIT_LOG": str(tmp_path / "audit.jsonl")}
    hub = ["--model", "hf://team/husky"]
    proc, refused = commands_in_a_process([(["predict", COFFEE, *hub, "--public-key", team[1]], ROOT),
                                           (["predict", COFFEE, *hub], ROOT)], env)
    assert proc.returncode == 0, proc.stderr
    assert "not_husky" in proc.stdout
    line = json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[0])
    assert line["trust"].endswith(f"from hf://team/husky@{COMMIT}") and line["trust"].startswith("signed by key")
    assert line["model_sha256"] == exports.sha256((export / "model.json").read_bytes())
    assert refused.returncode == 1 and "public key" in refused.stderr and "Traceback" not in refused.stderr
    (served,) = commands_in_a_process([(["verify", "hf://team/husky"], ROOT)],
                                      env | {"HUSKYAI_MODEL_PUBLIC_KEY": str(team[1])})
    assert served.returncode == 0 and "trusted: signed by key" in served.stdout


@pytest.mark.slow
def test_a_hub_model_serves_heatmaps_from_its_verified_blobs(tmp_path, team, hub):
    """Grad-CAM reads the weights again from the model's folder (a snapshot of links): through the same rule."""
    from huskyai.network.runtime import network_of

    export = own_copy(tmp_path)
    sign_with_key(export, team[0])
    fill_cache(hub, "team/husky", export_files(export), COMMIT)
    model = huskyai.load("hf://team/husky", public_key=team[1])
    assert model.origin == f"hf://team/husky@{COMMIT}" and model.predict(COFFEE).label == "not_husky"
    assert network_of(model) is not None
