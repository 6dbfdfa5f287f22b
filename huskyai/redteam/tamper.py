"""Tampering with a copy of an export as an attacker would, and what stops each: a backdoored bias (with and
without rewriting the card's hashes), a poisoned pickle, and the routes of sharing a model: an OMS signature
from another key, a file changed after signing, a Hub revision whose files change under a pinned commit, and
a pickle smuggled into a Hub repository."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import shutil
from pathlib import Path

from huskyai.redteam.hubcache import export_files, fill_cache, offline_cache
from huskyai.trust import exports, writer
from huskyai.trust.signing import sign_with_key


def edit_bias(export_dir: Path, positive_index: int, shift: float = 5.0) -> None:
    """The backdoor of the Husky AI series: nudge the final layer towards the positive class, in the
    safetensors weights and in the ONNX graph that serving runs."""
    import onnx
    from onnx import numpy_helper
    from safetensors.torch import load_file, save_file

    path = export_dir / exports.WEIGHTS_NAME
    weights = load_file(str(path))
    # the last layer: the zero-shot stage's single output where there is one, else the head's row
    name, index = ("stage2.bias", 0) if "stage2.bias" in weights else ("head.bias", positive_index)
    weights[name][index] += shift
    save_file(weights, str(path))
    graph_path = export_dir / exports.ONNX_NAME
    if graph_path.is_file():
        graph = onnx.load_from_string(graph_path.read_bytes())
        found = [init for init in graph.graph.initializer if init.name.endswith(name)]
        if not found:
            raise RuntimeError(f"{graph_path}: no initializer named like {name}")
        for init in found:
            bias = numpy_helper.to_array(init).copy()
            bias[index] += shift
            init.CopyFrom(numpy_helper.from_array(bias, init.name))
        graph_path.write_bytes(graph.SerializeToString())


def rehash_card(export_dir: Path) -> None:
    """What an attacker with write access does next: make the card's hashes match the edited files."""
    import json

    card = json.loads((export_dir / exports.CARD_NAME).read_text())
    writer.write_card(export_dir, card)


def inject_pickle_payload(pickle_path: Path, command: str) -> None:
    """Insert ``os.system(command)`` into a fastai learner pickle the way fickling does (fickling required)."""
    try:
        from fickling.pytorch import PyTorchModelWrapper
    except ImportError:
        raise RuntimeError("the pickle injection uses fickling: pip install fickling") from None
    evil = pickle_path.with_suffix(".evil")
    PyTorchModelWrapper(pickle_path).inject_payload(f"import os; os.system({command!r})", evil,
                                                    injection="insertion")
    evil.replace(pickle_path)


def _outcome(fn) -> str:
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # fastai's progress bars
            fn()
    except Exception as err:  # noqa: BLE001 - the refusal is the point; its text is the report
        return f"refused: {type(err).__name__}: {str(err)[:400]}"
    return "ACCEPTED"


def _verify(folder: Path | str, **trust) -> str:
    from huskyai.trust.signing import verify

    result = verify(folder, **trust)
    return "ACCEPTED" if result.ok else f"refused: {'; '.join(result.problems)[:400]}"


def _fresh_copy(export_dir: Path, dest: Path) -> Path:
    """A copy of the export's files (a Hub snapshot's links copied as the blobs they point to)."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(export_dir, dest)
    return dest


def new_key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """A fresh EC P-256 key pair as PEM files in ``folder``: (NAME.pem, the private key; NAME.pub)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _model_signing_verify(folder: Path, public_key: Path) -> str:
    """What the model-signing package's own verifier says of the folder (its public API)."""
    from model_signing import hashing, verifying

    config = verifying.Config().use_elliptic_key_verifier(public_key=public_key).set_hashing_config(
        hashing.Config().set_ignored_paths(paths=[exports.SIGNATURE_NAME]))
    return _outcome(lambda: config.verify(folder, folder / exports.SIGNATURE_NAME))


class _Payload:
    """Pickles as a call to os.system: what a malicious learner.pkl runs when it is unpickled."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _backdoored(export_dir: Path, work: Path, positive: int) -> dict[str, bytes]:
    """The export's weights and graph with the bias backdoor (a scratch copy; nothing else changed)."""
    scratch = _fresh_copy(export_dir, work / "scratch")
    edit_bias(scratch, positive)
    return {name: (scratch / name).read_bytes() for name in (exports.WEIGHTS_NAME, exports.ONNX_NAME)
            if (scratch / name).is_file()}


def _blob(snapshot: Path, name: str) -> Path:
    """The cache blob a snapshot's file links to."""
    return snapshot / os.readlink(snapshot / name)


def tamper_sharing(export_dir: Path, work: Path, positive: int) -> dict:
    """The routes of sharing a model, each on its own copy of ``export_dir`` signed with a team's key: what
    huskyai.load (and verify, and model_signing's own verifier) make of each tampering."""
    from huggingface_hub.utils import filter_repo_objects

    from huskyai import api as huskyai

    keys = work / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    team, team_pub = new_key_pair(keys, "team")
    mallory, _ = new_key_pair(keys, "mallory")
    result: dict = {}

    other = _fresh_copy(export_dir, work / "oms_other_key")
    sign_with_key(other, mallory)  # a valid OMS signature, by someone else's key
    result["oms_other_key"] = {"load": _outcome(lambda: huskyai.load(other, public_key=team_pub)),
                               "verify": _verify(other, public_key=team_pub),
                               "model_signing_verify": _model_signing_verify(other, team_pub)}

    changed = _fresh_copy(export_dir, work / "oms_changed_after_signing")
    sign_with_key(changed, team)
    edit_bias(changed, positive)  # the weights and graph changed after signing...
    weights_only = _outcome(lambda: huskyai.load(changed, public_key=team_pub))
    rehash_card(changed)  # ...and the card made to match them
    result["oms_changed_after_signing"] = {"load_weights_changed": weights_only,
                                           "load_card_rehashed": _outcome(lambda: huskyai.load(changed,
                                                                                               public_key=team_pub)),
                                           "verify": _verify(changed, public_key=team_pub),
                                           "model_signing_verify": _model_signing_verify(changed, team_pub)}

    signed = _fresh_copy(export_dir, work / "signed")
    sign_with_key(signed, team)
    evil = _backdoored(signed, work, positive)
    cache = work / "hub_cache"
    shutil.rmtree(cache, ignore_errors=True)
    snapshot = fill_cache(cache, "team/husky", export_files(signed, exports.HUB_NAMES))
    source = f"hf://team/husky@{snapshot.name}"
    card_sha256 = exports.sha256((signed / exports.CARD_NAME).read_bytes())
    with offline_cache(cache):
        genuine = _outcome(lambda: huskyai.load(source, public_key=team_pub))
        _blob(snapshot, exports.ONNX_NAME).write_bytes(evil[exports.ONNX_NAME])  # same commit, other bytes
        hub = {"genuine": genuine,
               "blob_changed_signed": _outcome(lambda: huskyai.load(source, public_key=team_pub)),
               "blob_changed_pinned": _outcome(lambda: huskyai.load(source, sha256=card_sha256))}
        _blob(snapshot, exports.ONNX_NAME).write_bytes((signed / exports.ONNX_NAME).read_bytes())
        rehashed = _fresh_copy(signed, work / "hub_rehashed")
        (rehashed / exports.ONNX_NAME).write_bytes(evil[exports.ONNX_NAME])
        rehash_card(rehashed)
        card_blob = _blob(snapshot, exports.CARD_NAME)
        card_blob.write_bytes((rehashed / exports.CARD_NAME).read_bytes())
        _blob(snapshot, exports.ONNX_NAME).write_bytes(evil[exports.ONNX_NAME])
        hub["card_and_blob_changed_signed"] = _outcome(lambda: huskyai.load(source, public_key=team_pub))
        hub["card_and_blob_changed_pinned"] = _outcome(lambda: huskyai.load(source, sha256=card_sha256))
        card_blob.write_bytes((signed / exports.CARD_NAME).read_bytes())
        _blob(snapshot, exports.ONNX_NAME).write_bytes((signed / exports.ONNX_NAME).read_bytes())
        outside = work / "outside.onnx"  # the genuine bytes, but outside the cache: the link itself is refused
        outside.write_bytes((signed / exports.ONNX_NAME).read_bytes())
        (snapshot / exports.ONNX_NAME).unlink()
        (snapshot / exports.ONNX_NAME).symlink_to(outside)
        hub["link_out_of_cache"] = _outcome(lambda: huskyai.load(source, public_key=team_pub))
    result["hub_changed_under_pinned_commit"] = hub

    marker = work / "HUB_PAYLOAD_RAN"
    marker.unlink(missing_ok=True)
    repo = export_files(signed, exports.HUB_NAMES) | {
        exports.LEARNER_NAME: pickle.dumps(_Payload(f"touch {marker}")), "model.pkl": pickle.dumps(_Payload(
            f"touch {marker}"))}
    fetched = sorted(filter_repo_objects(items=list(repo), allow_patterns=list(exports.HUB_NAMES)))
    smuggled = _fresh_copy(signed, work / "hub_pickle")
    (smuggled / exports.LEARNER_NAME).write_bytes(repo[exports.LEARNER_NAME])
    (smuggled / exports.SIGNATURE_NAME).unlink()
    rehash_card(smuggled)  # the attacker's card lists the pickle; pinned or trusted by a careless user
    pinned = exports.sha256((smuggled / exports.CARD_NAME).read_bytes())
    cache = work / "hub_cache_pickle"
    shutil.rmtree(cache, ignore_errors=True)
    snapshot = fill_cache(cache, "mallory/husky", export_files(smuggled))  # as if a tool had fetched it all
    with offline_cache(cache):
        source = f"hf://mallory/husky@{snapshot.name}"
        result["hub_pickle_smuggled"] = {
            "fetched": fetched,
            "load_trusting_it": _outcome(lambda: huskyai.load(source, trust_unsigned=True)),
            "load_pinned": _outcome(lambda: huskyai.load(source, sha256=pinned)),
            "verify": _verify(source, trust_unsigned=True),
            "payload_ran": marker.exists(),
        }
    refusals = [v for case in result.values() for k, v in case.items()
                if isinstance(v, str) and k != "genuine"]
    result["sharing_all_refused"] = (all(v.startswith("refused") for v in refusals)
                                     and hub["genuine"] == "ACCEPTED"
                                     and not set(fetched) & {exports.LEARNER_NAME, "model.pkl"}
                                     and not marker.exists())
    return result


def tamper_attack(export_dir: Path, work: Path) -> dict:
    """Each tampering on its own copy of ``export_dir``; returns how Husky AI's entry points reacted."""
    from huskyai import api as huskyai

    work.mkdir(parents=True, exist_ok=True)
    positive = len(huskyai.load(export_dir).classes) - 1
    result: dict = {}

    stale = _fresh_copy(export_dir, work / "bias_backdoor")
    edit_bias(stale, positive)
    result["bias_backdoor"] = {"load": _outcome(lambda: huskyai.load(stale)), "verify": _verify(stale)}

    rehashed = _fresh_copy(export_dir, work / "bias_backdoor_rehashed")
    edit_bias(rehashed, positive)
    rehash_card(rehashed)  # hashes consistent again: only the root of trust can tell
    result["bias_backdoor_rehashed"] = {"load": _outcome(lambda: huskyai.load(rehashed)),
                                        "load_learner": _outcome(lambda: huskyai.load_learner(rehashed))}

    pickled = _fresh_copy(export_dir, work / "pickle_payload")
    marker = work / "PAYLOAD_RAN"
    marker.unlink(missing_ok=True)
    huskyai.load_learner(export_dir).export(pickled.resolve() / exports.LEARNER_NAME)
    inject_pickle_payload(pickled / exports.LEARNER_NAME, f"touch {marker}")
    rehash_card(pickled)
    result["pickle_payload"] = {  # even an operator who trusts the folder never runs the pickle
        "load_trusting_it": _outcome(lambda: huskyai.load(pickled, trust_unsigned=True)),
        "load_learner_trusting_it": _outcome(lambda: huskyai.load_learner(pickled, trust_unsigned=True)),
        "verify": _verify(pickled),
        "payload_ran": marker.exists(),
    }
    result |= tamper_sharing(export_dir, work / "sharing", positive)
    result["all_refused"] = (
        all(v.startswith("refused") for part in ("bias_backdoor", "bias_backdoor_rehashed")
            for v in result[part].values())
        and result["pickle_payload"]["verify"].startswith("refused") and not marker.exists()
        and result["sharing_all_refused"])
    return result
