"""Sharing an export on the Hugging Face Hub without a pickle: ``push``.

What goes up is the export as ``huskyai.load`` would trust it, from the very bytes that were verified: the
card, every file it lists (the safetensors weights, the ONNX graph or graphs, plots, the red-team summary),
model.sig where the export has one, and a README.md, the model card Hub users expect, whose metadata block
names the library, the task (image-classification), the licence and tags. Nothing else: a card that lists
learner.pkl is refused, as is any export that ``verify`` refuses, and a model.sig that no longer signs this
card. ``dry_run`` stops before the network and returns what would be uploaded (``stage`` also writes it to a
new folder, to look at); otherwise huggingface_hub creates the repository if needed and uploads everything in
one commit, whose hash is returned.

The way fastai models are usually shared, huggingface_hub's ``push_to_hub_fastai``, uploads model.pkl, which
``from_pretrained_fastai`` unpickles; a Husky AI model on the Hub is loaded with ``huskyai.load("hf://...")``,
which fetches only the export's known names and verifies them like any export.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huskyai.errors import HubError, IntegrityError
from huskyai.trust import exports, hub, oms
from huskyai.trust.signing import verify

README_NAME = "README.md"
LIBRARY_NAME = "huskyai"
PIPELINE_TAG = "image-classification"
TAGS = ("huskyai", "image-classification", "onnx", "safetensors", "no-pickle")


@dataclass
class PushResult:
    repo_id: str
    files: dict[str, bytes] = field(repr=False)  # every file uploaded (or, on a dry run, that would be), by name
    card_sha256: str = ""  # what a user pins: huskyai.load("hf://REPO", sha256=...)
    trust: str = ""  # why the export was trusted when it was pushed
    commit: str | None = None  # the Hub's commit; None on a dry run
    url: str | None = None
    stage: Path | None = None  # the folder the files were written to, when asked for

    @property
    def source(self) -> str:
        """What ``huskyai.load`` takes for the pushed model: hf://REPO@COMMIT (hf://REPO on a dry run)."""
        return f"{hub.SCHEME}{self.repo_id}" + (f"@{self.commit}" if self.commit else "")


def push(folder: str | Path, repo_id: str, *, sha256: str | None = None, public_key: str | Path | bytes | None = None,
         trust_unsigned: bool = False, license: str = "mit", private: bool = False, revision: str | None = None,
         message: str | None = None, dry_run: bool = False, stage: str | Path | None = None,
         token: str | None = None) -> PushResult:
    """Upload the export in ``folder`` to the Hub repository ``repo_id`` (OWNER/NAME), after ``verify``'s checks
    with ``sha256``, ``public_key`` and ``trust_unsigned`` as for ``huskyai.load``. ``license``: the README's
    licence id; ``private``: a new repository is private; ``revision``: the branch to commit to (default main);
    ``token``: a Hub token (default: huggingface_hub's, e.g. $HF_TOKEN). IntegrityError, one line, when the export
    cannot be shared or the upload fails."""
    repo_id = hub.check_repo_id(repo_id)
    if hub.is_hub(folder):
        raise IntegrityError(f"{folder}: push uploads a local export folder; this is already on the Hub")
    files, export = _files(exports.resolve(folder), sha256, public_key, trust_unsigned)
    files[README_NAME] = readme(export, repo_id, license, files).encode()
    result = PushResult(repo_id, files, export.card_sha256, export.trust)
    if stage is not None:
        result.stage = _write_stage(Path(stage), files)
    if dry_run:
        return result
    result.commit, result.url = _upload(repo_id, files, private, revision, message or f"Husky AI model "
                                        f"{export.card_sha256[:12]}", token)
    return result


def _files(folder: Path, sha256: str | None, public_key: str | Path | bytes | None,
           trust_unsigned: bool) -> tuple[dict[str, bytes], exports.VerifiedExport]:
    """The files to upload, from the bytes ``open_export`` verified, once ``verify`` has nothing against them."""
    checked = verify(folder, sha256=sha256, trust_unsigned=trust_unsigned, public_key=public_key)
    if not checked.ok:
        raise IntegrityError("; ".join(checked.problems))
    card, _, _ = exports.check_files(folder)
    if card is not None and exports.LEARNER_NAME in card["files"]:
        raise IntegrityError(f"{folder / exports.CARD_NAME}: lists {exports.LEARNER_NAME}, and push never uploads "
                             "a pickle: train without --pickle (or export again without it) and push that")
    export = exports.open_export(folder, sha256=sha256, trust_unsigned=trust_unsigned, public_key=public_key,
                                 pin_env=exports.pin_env_for(card or {}))
    files = {exports.CARD_NAME: export.card_bytes, **export.files}
    signature = export.signature if export.signature is not None else exports.read_signature(folder)
    if signature is not None:
        if oms.unverified_digests(signature, str(folder / exports.SIGNATURE_NAME)).get(exports.CARD_NAME) \
                != export.card_sha256:
            raise IntegrityError(f"{folder / exports.SIGNATURE_NAME}: does not sign this card (the card changed "
                                 "after signing): sign it again with huskyai sign DIR --key PRIVATE.pem, then push")
        files[exports.SIGNATURE_NAME] = signature
    return files, export


def readme(export: exports.VerifiedExport, repo_id: str, license: str, files: dict[str, bytes]) -> str:
    """The Hub model card (README.md): a metadata block (library_name, tags, license, pipeline_tag), then what
    the model is, how to load and verify it, and every file's sha256."""
    from huggingface_hub import ModelCardData  # the Hub's own metadata format

    card = export.card
    meta = ModelCardData(library_name=LIBRARY_NAME, license=license, pipeline_tag=PIPELINE_TAG, tags=list(TAGS))
    source = f"{hub.SCHEME}{repo_id}"
    signed = exports.SIGNATURE_NAME in files
    lines = [
        "---", meta.to_yaml(), "---", "",
        f"# {card.get('name', 'Husky AI model')}", "", _summary(card), "",
        "No pickle: the weights are safetensors, the network an ONNX graph, and `model.json` (the model card) "
        "gives the sha256 of every file. Husky AI fetches only those names from this repository and checks each "
        "against the card before it parses a byte.",
        "", "## Load it", "", "```python", "import huskyai", "",
    ]
    trust_arg = 'public_key="signer.pub"' if signed else f'sha256="{export.card_sha256}"'
    cli_arg = "--public-key signer.pub" if signed else f"--sha256 {export.card_sha256}"
    env = "HUSKYAI_MODEL_PUBLIC_KEY=signer.pub" if signed else f"HUSKYAI_MODEL_SHA256={export.card_sha256}"
    lines += [f'model = huskyai.load("{source}@COMMIT", {trust_arg})',
              'print(model.predict("photo.jpg"))', "```", "",
              f"From the command line: `huskyai predict photo.jpg --model {source}@COMMIT {cli_arg}`; the app: "
              f"`HUSKYAI_MODEL={source}@COMMIT {env} python app.py`. COMMIT is a commit hash of this repository: "
              "pin it, so that a later push cannot change what you load.", ""]
    if signed:
        lines += [f"`signer.pub` is the public key of whoever signed `model.sig`; without it, pin the card: "
                  f"`sha256=\"{export.card_sha256}\"`.", ""]
    if signed:
        lines += ["## Verify the signature", "",
                  "`model.sig` is an [OpenSSF model signing](https://github.com/ossf/model-signing-spec) (OMS) "
                  "signature of `model.json` and every file it lists. Check it with the signer's public key:", "",
                  "```bash", f"hf download {repo_id} --local-dir {repo_id.split('/')[1]}",
                  f"model_signing verify key {repo_id.split('/')[1]} --signature {repo_id.split('/')[1]}/model.sig "
                  "--public_key signer.pub --ignore_unsigned_files", "```", ""]
    lines += _metrics(card)
    lines += ["## Files", "", "| file | sha256 |", "|---|---|"]
    lines += [f"| `{name}` | `{exports.sha256(data)}` |" for name, data in files.items()]
    lines += ["", f"The card's sha256 (what `sha256=` pins): `{export.card_sha256}`.", ""]
    return "\n".join(lines)


def _summary(card: dict[str, Any]) -> str:
    """What the model is, in a sentence, from the card's fields."""
    positive, classes = card.get("positive_class"), card.get("classes")
    if not positive or not isinstance(classes, list):
        return "A model exported by Husky AI."
    return (f"Is this a {positive}? An image classifier ({card.get('arch', 'a network')}, "
            f"{card.get('input_size', '?')} px input) trained with Husky AI; classes: "
            f"{', '.join(map(str, classes))}; it says {positive} when P({positive}) >= "
            f"{card.get('decision_threshold', 0.5)}.")


def _metrics(card: dict[str, Any]) -> list[str]:
    """The card's validation metrics as a short table, when it has them."""
    validation = (card.get("metrics") or {}).get("validation") or {}
    shown = {k: validation[k] for k in ("n", "accuracy", "precision", "recall", "f1") if k in validation}
    if not shown:
        return []
    return ["## Validation", "", "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown),
            "| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in shown.values()) + " |", ""]


def _write_stage(stage: Path, files: dict[str, bytes]) -> Path:
    """The files to upload, written to ``stage``, a folder that did not exist (nothing is written over)."""
    try:
        stage.mkdir(parents=True, exist_ok=False, mode=0o755)
    except OSError as err:
        raise IntegrityError(f"{stage}: cannot make the staging folder ({err.strerror or err}; it must not "
                             "exist yet)") from None
    for name, data in files.items():
        fd = os.open(stage / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return stage


def _upload(repo_id: str, files: dict[str, bytes], private: bool, revision: str | None, message: str,
            token: str | None) -> tuple[str, str]:
    """One commit with every file, through huggingface_hub; (commit hash, its URL)."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token, library_name=LIBRARY_NAME)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in files.items()]
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.create_commit(repo_id, operations, commit_message=message, revision=revision, repo_type="model")
    except Exception as err:  # offline, no token, no right to the repository, HTTP errors: whatever the remote
        # call raises (huggingface_hub's HTTP client has error classes of its own, not OSError), one line says why
        first = (str(err).strip().splitlines() or [""])[0][:240]
        raise HubError(f"{repo_id}: the upload to the Hugging Face Hub failed ({type(err).__name__}: "
                       f"{first})") from None
    return info.oid, info.commit_url
