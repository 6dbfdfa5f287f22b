"""The export/ format, and the trust in it: a JSON model card that names and hashes every file beside it.

    model.json          the card: architecture, classes, preprocessing, threshold, metrics, hashes
    model.safetensors   the weights, loadable without unpickling anything
    model.onnx          the same network as an fp32 ONNX graph, what serving runs
    model.int8.onnx     optional: its static INT8 quantization (huskyai.training.quantize), served on request
    learner.pkl         fastai's Learner pickle, only when asked for (never opened by Husky AI)
    *.png, redteam.json validation plots and a red-team summary
    model.sig           optional: an OMS signature (huskyai.trust.oms) of the card and every file it lists;
                        not listed in the card, which it covers

Why a card is trusted (``open_export``): for exactly one reason, the first that applies:
1. it is signed by the public key the caller gives (``public_key=``, or $HUSKYAI_MODEL_PUBLIC_KEY for the husky
   model): model.sig must verify with that key, and cover the card's bytes and every file the card lists, or
   the export is refused whatever else vouches for it ("signed by key <fingerprint>");
2. its sha256 equals the one the caller pins (``sha256=``, or the model's own variable: $HUSKYAI_MODEL_SHA256
   for the husky model, $HUSKYAI_ROBUST_MODEL_SHA256 for the noise-trained "robust" one, $HUSKYAI_MOOD_MODEL_SHA256
   for the mood model, so pinning one never refuses another); a pin given with a public key must match too;
3. its sha256 is one of ``SHIPPED_CARDS``, pinned in this package for the shipped export/, export-robust/ and
   export-mood/;
4. it carries a valid HMAC-SHA256 signature by this machine's key ($HUSKYAI_SIGNING_KEY, or the key
   file that training creates on first use in the user's config folder, mode 0600): "made on this machine";
5. the caller says so explicitly (``trust_unsigned=True``), and that is shown wherever it is served.
The signature and the pin are checked on the card's raw bytes, before its JSON is parsed; the signature is
checked before the card is even read. Each file is read once, without following symlinks, hashed in memory,
and used from those bytes: a file swapped after the check is never what gets loaded. Every listed ONNX graph
must also keep to the graph policy (huskyai.trust.graphpolicy: no external data, standard operator domains),
checked on those bytes wherever files are read, so load, mood load, verify and sign all refuse a graph that
reaches outside itself.

A source ``hf://OWNER/NAME@REVISION`` is fetched through huggingface_hub (huskyai.trust.hub: the known names
only, never a pickle) and verified the same way; a folder that is a commit's snapshot in the Hugging Face cache
is read through its links into the cache's blobs/, and nowhere else. Its revision, resolved to a commit, is
part of the reason shown (``trust``) and of ``VerifiedExport.origin``; a card from the Hub that lists
learner.pkl is refused.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huskyai import settings
from huskyai.errors import IntegrityError, UnsignedError
from huskyai.settings import (
    MODEL_PUBLIC_KEY_ENV,
    MODEL_SHA256_ENV,
    MOOD_MODEL_SHA256_ENV,
    ROBUST_MODEL_SHA256_ENV,
    SIGNING_KEY_ENV,
)
from huskyai.trust import hub, oms
from huskyai.trust.graphpolicy import check_graph
from huskyai.trust.keys import key_path, signature_ok, signing_key

CARD_NAME = "model.json"
WEIGHTS_NAME = "model.safetensors"
ONNX_NAME = "model.onnx"
INT8_ONNX_NAME = "model.int8.onnx"  # optional second graph; the card's "graphs" names its precision and calibration
LEARNER_NAME = "learner.pkl"
PLOT_NAMES = ("confusion_matrix.png", "top_losses.png")
REDTEAM_NAME = "redteam.json"
MOOD_NAMES = ("mood.onnx", "importance.png", "validation.png")  # the mood model's export (huskyai.mood)
EXPORT_NAMES = (WEIGHTS_NAME, ONNX_NAME, INT8_ONNX_NAME, LEARNER_NAME, *PLOT_NAMES, REDTEAM_NAME,
                *MOOD_NAMES)  # nothing else is read
SIGNATURE_NAME = "model.sig"  # an OMS signature of the card and its files (huskyai.trust.oms), never in the card
KNOWN_NAMES = (CARD_NAME, SIGNATURE_NAME, *EXPORT_NAMES)  # every name an export folder may hold
HUB_NAMES = tuple(n for n in KNOWN_NAMES if n != LEARNER_NAME)  # what is fetched from the Hub: never a pickle
FORMAT_VERSION = 2
GRAPH_SUFFIX = ".onnx"  # a listed file with this suffix is an ONNX graph, checked by the graph policy


def _shipped_folder(folder: str = "export", wheel_name: str = "export") -> Path:
    """A shipped export inside an installed wheel (mapped in as huskyai/<wheel_name>), else ``folder`` beside the
    source tree."""
    package = Path(__file__).resolve().parent.parent  # huskyai/
    inside = package / wheel_name
    return inside if (inside / CARD_NAME).is_file() else package.parent / folder


DEFAULT_EXPORT = _shipped_folder()
# the noise-trained husky model, whose answers can be certified (huskyai.inference.certify): export-robust/
ROBUST_EXPORT = _shipped_folder("export-robust", "export_robust")
ROBUST_NAME = "robust"
SHIPPED_FOLDERS = {"husky": DEFAULT_EXPORT, ROBUST_NAME: ROBUST_EXPORT}  # huskyai.load(name), wherever installed
SHIPPED_NAMES = tuple(SHIPPED_FOLDERS)
# the root of trust for the shipped model: sha256 of export/model.json, which hashes every other file
SHIPPED_CARD_SHA256 = "bc6eb3d0a08fc2f76488f0f2581d260082bd87eb4f8616f1a083bedbcdade1ba"
# the same for export-robust/model.json: None until the noise-trained export ships (until then it loads only
# when pinned, signed by this machine's key or trusted by hand)
ROBUST_CARD_SHA256: str | None = "c826dc5cff62331867394071bc8367d96685871e19eee90d552f444c7afa963f"
# every shipped card, by model: export-mood/model.json is the mood model trained on a synthetic diary
SHIPPED_CARDS = {"husky": SHIPPED_CARD_SHA256,
                 "mood": "d3db83eeb6e8023c05cf13ef76aa9bf516000e0d57aca95bfd3ce8a43de8d513",
                 ROBUST_NAME: ROBUST_CARD_SHA256}
# the variable that pins each shipped husky model for the process, so pinning one never refuses another
PIN_ENVS = {"husky": MODEL_SHA256_ENV, ROBUST_NAME: ROBUST_MODEL_SHA256_ENV}
MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_CARD_BYTES = 1 << 20
MAX_SIGNATURE_BYTES = 1 << 20  # an OMS bundle for an export's few files is a few KB
_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- reading files once -----------------------------------------------------------------------

def _read_at(dir_fd: int, name: str, folder: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``name`` in the open folder: a regular file, never through a symlink."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
    except FileNotFoundError:
        if name == CARD_NAME:
            raise IntegrityError(f"{folder / name}: no model card; is {folder} an export folder?") from None
        raise IntegrityError(f"{folder / name}: missing (the model card lists it)") from None
    except OSError as err:
        if err.errno != errno.ELOOP or hub.snapshot_origin(folder) is None:
            raise IntegrityError(f"{folder / name}: cannot be opened safely ({err.strerror}; symlinks are "
                                 "refused)") from None
        fd = hub.open_linked(dir_fd, name, folder)  # a Hub cache snapshot: its link into blobs/, and only that
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise IntegrityError(f"{folder / name}: not a regular file")
        if info.st_size > max_bytes:
            raise IntegrityError(f"{folder / name}: {info.st_size} bytes, more than any model file should be")
        return f.read(max_bytes + 1)


def _open_folder(folder: Path) -> int:
    try:
        return os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as err:
        raise IntegrityError(f"{folder}: cannot open the export folder ({err.strerror})") from None


def parse_card(data: bytes, path: Path) -> dict[str, Any]:
    """The card's JSON, checked for shape: a known format and only plain, known file names."""
    try:
        card = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise IntegrityError(f"{path}: model card is not valid JSON ({err})") from None
    if not isinstance(card, dict) or card.get("format_version") not in (1, FORMAT_VERSION):
        raise IntegrityError(f"{path}: unsupported model card format (expected format_version {FORMAT_VERSION})")
    files = card.get("files")
    if not isinstance(files, dict) or not files:
        raise IntegrityError(f"{path}: model card lists no file hashes")
    for name, digest in files.items():
        if name not in EXPORT_NAMES:  # no paths, no "..", no other files: only the export's own names
            raise IntegrityError(f"{path}: the card names {name!r}, which is not an export file "
                                 f"({', '.join(EXPORT_NAMES)}); refusing it")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise IntegrityError(f"{path}: the card's hash for {name} is malformed")
    return card


@dataclass(frozen=True)
class VerifiedExport:
    """An export whose card is trusted and whose files matched it, held as the bytes that were hashed."""
    folder: Path
    card: dict[str, Any]
    card_sha256: str
    trust: str  # why the card is believed, in a few words (and, for a Hub model, where it came from)
    files: dict[str, bytes] = field(repr=False)
    origin: str | None = None  # hf://OWNER/NAME@COMMIT for a model from the Hugging Face Hub, else None
    card_bytes: bytes = field(default=b"", repr=False)  # model.json as read and hashed
    signature: bytes | None = field(default=None, repr=False)  # model.sig, when it was verified with a key


def _check_pin(digest: str, pin: str | None, path: Path, pin_env: str) -> None:
    """Refuse a card whose sha256 is not the pinned one: on its raw bytes, before its JSON is parsed."""
    if pin and digest != pin.strip().lower():
        raise IntegrityError(f"{path}: its sha256 {digest[:16]}... is not the pinned {pin[:16]}... "
                             f"(sha256= or ${pin_env}); "
                             "the model was changed or is not the one you pinned, refusing to load it")


def _trust(card: dict[str, Any], digest: str, folder: Path, pin: str | None, trust_unsigned: bool,
           pin_env: str, signed: oms.SignedFiles | None, has_signature_file: bool) -> str:
    """The one reason the card is believed (the pin and the signature were already checked); IntegrityError
    (UnsignedError when nobody vouches for it) otherwise."""
    path = folder / CARD_NAME
    if signed is not None:
        return f"signed by key {signed.fingerprint}"
    if pin:
        return "card sha256 pinned by the operator"
    if digest in {pinned for pinned in SHIPPED_CARDS.values() if pinned}:
        return "the shipped model: its card's sha256 is pinned in the huskyai package"
    if "signature" in card:
        key = signing_key()
        if key is None:
            raise IntegrityError(f"{path}: the card is signed, but there is no signing key here ({key_path()} or "
                                 f"${SIGNING_KEY_ENV}); pin it with sha256= / ${pin_env} instead")
        if not signature_ok(card, key):
            raise IntegrityError(f"{path}: the model card's signature is wrong (edited, or signed with another "
                                 "key); refusing to load it")
        return "signed with this machine's key (HMAC-SHA256)"
    if trust_unsigned:
        warnings.warn(f"{folder}: loading an UNSIGNED model because trust_unsigned was given", stacklevel=4)
        return "UNSIGNED: trusted explicitly by the operator"
    shipped = next((name for name, place in SHIPPED_FOLDERS.items() if folder.resolve() == place), None)
    if shipped is not None and SHIPPED_CARDS[shipped]:
        raise IntegrityError(f"{path}: the shipped model was changed (card sha256 {digest[:16]}..., the package "
                             f"pins {SHIPPED_CARDS[shipped][:16]}...); refusing to load it. Restore it with "
                             f"`git checkout {folder.name}/`, or pin your own with sha256= / ${pin_env}")
    if shipped is not None:
        raise UnsignedError(f"{path}: this package pins no card for the shipped {shipped!r} model yet; pin it "
                            f"(sha256={digest} or ${pin_env}) or sign it (`python -m huskyai sign {folder}`)")
    if has_signature_file:
        raise UnsignedError(f"{path}: the export carries an OMS signature ({SIGNATURE_NAME}), but no public key "
                            f"was given to check it; refusing to load it. Give the signer's public key "
                            f"(public_key= / --public-key / ${MODEL_PUBLIC_KEY_ENV}), or pin it (sha256={digest})")
    raise UnsignedError(f"{path}: the model card is not signed and not pinned, so anyone could have written it; "
                         f"refusing to load it. Pin it (sha256={digest} or ${pin_env}), sign it "
                         "(check it: `python -m huskyai verify DIR --trust-unsigned`, then "
                         "`python -m huskyai sign DIR`), or pass trust_unsigned=True / --trust-unsigned")


def pin_env_for(card: dict[str, Any]) -> str:
    """The variable that pins a model of this card's kind: what a check of any export folder (``verify``)
    compares it with. A door that knows its model (huskyai.load, the mood model) names its own instead."""
    return MOOD_MODEL_SHA256_ENV if card.get("kind") == "mood" else MODEL_SHA256_ENV


def resolve(name_or_folder: str | Path | None) -> Path:
    """The export folder meant by a shipped model's name ("husky", "robust"), a folder path, or None (the shipped
    husky model). A name wins over a folder of that name in the working directory: write ./husky for the folder."""
    if name_or_folder is None:
        return DEFAULT_EXPORT
    return SHIPPED_FOLDERS.get(str(name_or_folder), Path(name_or_folder))


def pin_env_for_name(name_or_folder: str | Path | None) -> str:
    """The variable that pins what ``name_or_folder`` names for the process: $HUSKYAI_ROBUST_MODEL_SHA256 for the
    shipped "robust" model, $HUSKYAI_MODEL_SHA256 for anything else a husky load is given."""
    return PIN_ENVS.get(str(name_or_folder), MODEL_SHA256_ENV) if name_or_folder is not None else MODEL_SHA256_ENV


def locate(source: str | Path | None) -> Path:
    """The folder to read for ``source``: ``resolve``'s, or for ``hf://OWNER/NAME@REVISION`` the commit's
    snapshot in the Hugging Face cache, fetched (the known names only) through huggingface_hub."""
    if hub.is_hub(source):
        return hub.fetch(str(source), HUB_NAMES)
    return resolve(source)


def public_key_for(public_key: str | Path | bytes | None, pin_env: str) -> str | Path | bytes | None:
    """The public key a load must check: the caller's, else $HUSKYAI_MODEL_PUBLIC_KEY for a husky model (the fast
    one or the robust one)."""
    if public_key is not None:
        return public_key
    return settings.model_public_key() if pin_env in PIN_ENVS.values() else None


def _has(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _verify_signature(dir_fd: int, folder: Path, public_key: str | Path | bytes) -> tuple[oms.SignedFiles, bytes]:
    """model.sig checked with ``public_key`` before anything else is read: the digests it vouches for."""
    pem = oms.read_key(public_key)
    if not _has(dir_fd, SIGNATURE_NAME):
        raise IntegrityError(f"{folder}: no {SIGNATURE_NAME}, but a public key was given (public_key= / "
                             f"--public-key / ${MODEL_PUBLIC_KEY_ENV}): only an export signed with key "
                             f"{oms.fingerprint(pem)} loads; refusing it")
    bundle = _read_at(dir_fd, SIGNATURE_NAME, folder, max_bytes=MAX_SIGNATURE_BYTES)
    return oms.verify_bundle(bundle, pem, str(folder / SIGNATURE_NAME)), bundle


def _check_covered(card: dict[str, Any], signed: oms.SignedFiles, folder: Path) -> None:
    """Every file the card lists must be signed with the very hash the card gives it."""
    for name, expected in card["files"].items():
        if name not in signed.digests:
            raise IntegrityError(f"{folder / SIGNATURE_NAME}: does not cover {name}, which the card lists "
                                 "(it was added after signing); refusing it")
        if signed.digests[name] != expected:
            raise IntegrityError(f"{folder / SIGNATURE_NAME}: signs another {name} than the card lists (changed "
                                 "after signing); refusing it")


def _check_origin(card: dict[str, Any], folder: Path, origin: str | None) -> None:
    """A card from the Hub never lists a pickle: the Hub copy is fetched without one."""
    if origin and LEARNER_NAME in card["files"]:
        raise IntegrityError(f"{folder / CARD_NAME}: a model from the Hub ({origin}) whose card lists "
                             f"{LEARNER_NAME}; Husky AI never fetches or opens a pickle, refusing it")


def _read_listed(dir_fd: int, card: dict[str, Any], folder: Path, strict: bool) -> tuple[dict[str, bytes], list[str]]:
    """The bytes of every file the card lists that matches its hash and, for an ONNX graph, the graph
    policy; and a line per file that does not. ``strict``: raise IntegrityError at the first problem instead."""
    files: dict[str, bytes] = {}
    problems: list[str] = []
    for name, expected in card["files"].items():
        try:
            data = _read_at(dir_fd, name, folder)
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                raise IntegrityError(f"{folder / name}: sha256 {actual[:16]}... does not match the model card "
                                     f"({expected[:16]}...); the file was changed after export, refusing to load it")
            if name.endswith(GRAPH_SUFFIX):
                check_graph(data, str(folder / name))
        except IntegrityError as err:
            if strict:
                raise
            problems.append(str(err))
            continue
        files[name] = data
    return files, problems


def open_export(folder: str | Path | VerifiedExport | None = None, sha256: str | None = None,
                trust_unsigned: bool = False, pin_env: str = MODEL_SHA256_ENV,
                public_key: str | Path | bytes | None = None) -> VerifiedExport:
    """Read, trust-check and hash an export folder (or a shipped model by name, or ``hf://OWNER/NAME@REVISION``);
    IntegrityError with one clear line otherwise. ``pin_env`` names the variable that pins this model for the
    process when ``sha256`` is not given (read by huskyai.settings.pinned_sha256): $HUSKYAI_MODEL_SHA256 (the
    husky model, whose public key may also come from $HUSKYAI_MODEL_PUBLIC_KEY), or ``MOOD_MODEL_SHA256_ENV``
    for the mood model. ``public_key``: a PEM file (or its bytes) whose OMS signature (model.sig) must hold.
    An export already verified (a VerifiedExport) is returned as it is."""
    if isinstance(folder, VerifiedExport):
        return folder
    folder = locate(folder)
    origin = hub.snapshot_origin(folder)
    key = public_key_for(public_key, pin_env)
    pin = sha256 or settings.pinned_sha256(pin_env)
    dir_fd = _open_folder(folder)
    try:
        signed, bundle = _verify_signature(dir_fd, folder, key) if key is not None else (None, None)
        card_bytes = _read_at(dir_fd, CARD_NAME, folder, max_bytes=MAX_CARD_BYTES)
        digest = hashlib.sha256(card_bytes).hexdigest()
        if signed is not None and signed.digests.get(CARD_NAME) != digest:
            raise IntegrityError(f"{folder / CARD_NAME}: not the card that {SIGNATURE_NAME} signs (changed after "
                                 f"signing); refusing to load it")
        _check_pin(digest, pin, folder / CARD_NAME, pin_env)
        card = parse_card(card_bytes, folder / CARD_NAME)
        _check_origin(card, folder, origin)
        if signed is not None:
            _check_covered(card, signed, folder)
        trust = _trust(card, digest, folder, pin, trust_unsigned, pin_env, signed,
                       signed is None and _has(dir_fd, SIGNATURE_NAME))
        files, _ = _read_listed(dir_fd, card, folder, strict=True)
    finally:
        os.close(dir_fd)
    if origin:
        trust = f"{trust}; from {origin}"
    return VerifiedExport(folder, card, digest, trust, files, origin, card_bytes, bundle)


@dataclass(frozen=True)
class ExportFiles:
    """An export's files as read, trust aside: what ``verify`` reports and ``sign`` signs."""
    folder: Path
    card: dict[str, Any] | None  # None when there is no readable card
    problems: list[str]  # every problem with the card and the files it lists; empty when all match
    files: dict[str, bytes] = field(repr=False)  # the listed files that matched the card
    card_bytes: bytes = field(default=b"", repr=False)


def read_export(folder: str | Path | None) -> ExportFiles:
    """The card, every problem with the files it lists and the bytes that matched (``check_files``), with the
    card's own bytes: what ``sign`` signs, exactly as it was checked."""
    folder = locate(folder)
    try:
        dir_fd = _open_folder(folder)
    except IntegrityError as err:
        return ExportFiles(folder, None, [str(err)], {})
    try:
        card_bytes = _read_at(dir_fd, CARD_NAME, folder, max_bytes=MAX_CARD_BYTES)
        card = parse_card(card_bytes, folder / CARD_NAME)
        _check_origin(card, folder, hub.snapshot_origin(folder))
        files, problems = _read_listed(dir_fd, card, folder, strict=False)
    except IntegrityError as err:
        return ExportFiles(folder, None, [str(err)], {})
    finally:
        os.close(dir_fd)
    return ExportFiles(folder, card, problems, files, card_bytes)


def check_files(folder: str | Path) -> tuple[dict[str, Any] | None, list[str], dict[str, bytes]]:
    """The card, every problem with the files it lists (empty when all match) and the bytes that
    matched, trust aside: what `verify` reports and `sign` demands before it signs."""
    read = read_export(folder)
    return read.card, read.problems, read.files


def read_card(folder: str | Path | None) -> dict[str, Any] | None:
    """The card of a local export folder, checked for shape but not for trust; None if it cannot be read."""
    folder = resolve(folder)
    try:
        dir_fd = _open_folder(folder)
    except IntegrityError:
        return None
    try:
        return parse_card(_read_at(dir_fd, CARD_NAME, folder, max_bytes=MAX_CARD_BYTES), folder / CARD_NAME)
    except IntegrityError:
        return None
    finally:
        os.close(dir_fd)


def read_signature(folder: Path) -> bytes | None:
    """model.sig's bytes in ``folder`` (never through a link but a Hub cache's), or None if there is none."""
    dir_fd = _open_folder(folder)
    try:
        return _read_at(dir_fd, SIGNATURE_NAME, folder, MAX_SIGNATURE_BYTES) if _has(dir_fd, SIGNATURE_NAME) \
            else None
    finally:
        os.close(dir_fd)
