"""The export/ format: a JSON model card that names and hashes every file beside it.

    model.json          the card: architecture, classes, preprocessing, threshold, metrics, hashes
    model.safetensors   the weights, loadable without unpickling anything
    learner.pkl         fastai's Learner (learn.export), opened only after its hash matches
    *.png               confusion matrix and top losses from validation
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

CARD_NAME = "model.json"
WEIGHTS_NAME = "model.safetensors"
LEARNER_NAME = "learner.pkl"
PLOT_NAMES = ("confusion_matrix.png", "top_losses.png")
EXPORT_NAMES = (WEIGHTS_NAME, LEARNER_NAME, *PLOT_NAMES)  # what an export writes; nothing else is touched
FORMAT_VERSION = 1
SIGNING_KEY_ENV = "HUSKYAI_SIGNING_KEY"
DEFAULT_EXPORT = Path(__file__).resolve().parent.parent / "export"


class IntegrityError(RuntimeError):
    """A model file is missing, or its content does not match the model card."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def signing_key() -> bytes | None:
    """The HMAC key from $HUSKYAI_SIGNING_KEY; when set, export signs and loading demands a signature."""
    key = os.environ.get(SIGNING_KEY_ENV, "")
    return key.encode() if key else None


def card_signature(card: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 over the card's canonical JSON, the signature itself left out."""
    body = {k: v for k, v in card.items() if k != "signature"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def write_card(export_dir: Path, card: dict[str, Any], key: bytes | None = None) -> dict[str, Any]:
    """Hash the export's files into ``card``, sign it when a key is set, write model.json."""
    export_dir = Path(export_dir)
    card = {k: v for k, v in card.items() if k != "signature"} | {"format_version": FORMAT_VERSION}
    card["files"] = {name: sha256_of(export_dir / name) for name in sorted(EXPORT_NAMES)
                     if (export_dir / name).is_file()}
    key = key or signing_key()
    if key:
        card["signature"] = {"alg": "HMAC-SHA256", "value": card_signature(card, key)}
    (export_dir / CARD_NAME).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    return card


def check_signature(card: dict[str, Any], path: Path, key: bytes | None) -> None:
    """With a key, the card must carry a valid signature; without one, nothing is demanded."""
    if not key:
        return
    sig = card.get("signature")
    if not isinstance(sig, dict) or sig.get("alg") != "HMAC-SHA256" or not isinstance(sig.get("value"), str):
        raise IntegrityError(f"{path}: the model card is not signed, and {SIGNING_KEY_ENV} demands a signature")
    if not hmac.compare_digest(sig["value"], card_signature(card, key)):
        raise IntegrityError(f"{path}: the model card's signature is wrong (edited, or signed with another key)")


def read_card(export_dir: Path, key: bytes | None = None) -> dict[str, Any]:
    """The parsed model card; its signature is checked when a key is given or set in the environment."""
    path = Path(export_dir) / CARD_NAME
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise IntegrityError(f"{path}: no model card; is {export_dir} an export folder?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise IntegrityError(f"{path}: model card is not valid JSON ({err})") from None
    if not isinstance(card, dict) or card.get("format_version") != FORMAT_VERSION:
        raise IntegrityError(f"{path}: unsupported model card format (expected format_version {FORMAT_VERSION})")
    if not isinstance(card.get("files"), dict):
        raise IntegrityError(f"{path}: model card lists no file hashes")
    check_signature(card, path, key or signing_key())
    return card


def verify_file(export_dir: Path, card: dict[str, Any], name: str) -> Path:
    """The path of ``name`` once its sha256 matches the card; IntegrityError otherwise."""
    path = Path(export_dir) / name
    expected = card["files"].get(name)
    if expected is None:
        raise IntegrityError(f"{path}: not listed in the model card; refusing to use it")
    if not path.is_file():
        raise IntegrityError(f"{path}: missing (the model card lists it)")
    if not isinstance(expected, str) or len(expected) != 64:
        raise IntegrityError(f"{path}: the model card's hash for it is malformed")
    actual = sha256_of(path)
    if actual != expected:
        raise IntegrityError(f"{path}: sha256 {actual[:16]}... does not match the model card ({expected[:16]}...); "
                             "the file was changed after export, refusing to load it")
    return path


def verify_all(export_dir: Path, card: dict[str, Any] | None = None) -> list[str]:
    """Problems found when checking the card and every file it lists (empty when all match)."""
    try:
        card = card or read_card(export_dir)
    except IntegrityError as err:
        return [str(err)]
    problems = []
    for name in card["files"]:
        try:
            verify_file(export_dir, card, name)
        except IntegrityError as err:
            problems.append(str(err))
    return problems
