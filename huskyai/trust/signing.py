"""Checking an export as a whole (``huskyai.verify``) and signing it: with this machine's key (``sign``, an HMAC
in the card) or with a private key anyone can check with its public half (``sign_with_key``, an OMS signature
in model.sig, huskyai.trust.oms).

verify reports instead of raising: every file against the card, who vouches for the card, and what a
learner.pkl would import (information only: Husky AI never opens it); it fails wherever huskyai.load
would refuse, an unsigned card included. sign refuses whatever verify refuses but the missing signature
it is there to add, so it never blesses a changed file, a pickle that imports more than a learner needs,
or a card signed with another key (unless told to replace that signature). sign_with_key refuses the same,
and signs the digests of the very bytes it checked. Both write only an export's own names, and only
through huskyai.trust.writer.

The two signatures answer different questions, so both stay. The HMAC says "made on this machine": training
signs with a key it makes on first use, nothing to manage, and it cannot be checked anywhere else. The OMS
signature says "made by the holder of this private key", checked anywhere with the public key, by Husky AI or
by ``model_signing verify``. When a public key is given, model.sig must verify with it and nothing else can
stand in for it; without one, model.sig is not consulted and the HMAC (or a pin) decides as before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from huskyai.errors import IntegrityError, UnsignedError
from huskyai.trust import exports, oms, writer
from huskyai.trust.keys import key_source, signature_ok, signing_key


@dataclass
class VerifyResult:
    folder: Path
    problems: list[str] = field(default_factory=list)  # reasons to refuse the export; none if it is sound
    findings: list[str] = field(default_factory=list)  # what was checked and found right
    trust: str | None = None  # who vouches for the card; None if nobody does (or it is broken)
    pickle_note: str | None = None  # what learner.pkl would import, when that is within the learner policy

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(folder: str | Path | None = None, sha256: str | None = None, trust_unsigned: bool = False,
           public_key: str | Path | bytes | None = None) -> VerifyResult:
    """Check an export folder (default: the shipped model; or ``hf://OWNER/NAME@REVISION``) without loading
    it: its files against the card, then whether the card is trusted (signed by ``public_key``'s holder,
    pinned by ``sha256``, shipped, or signed on this machine), then any pickle. Where ``huskyai.load`` would
    refuse the export, so does verify (a problem, ``.ok`` False); an unsigned card is only a finding with
    ``trust_unsigned``, as ``load(trust_unsigned=True)`` accepts it."""
    result = VerifyResult(exports.resolve(folder))
    try:
        result.folder = exports.locate(folder)
    except IntegrityError as err:
        result.problems.append(str(err))
        return result
    card, result.problems, _ = exports.check_files(result.folder)
    if card is None or result.problems:
        return result
    result.findings.append(f"every file in {result.folder} matches its model card ({', '.join(card['files'])})")
    unsigned = None
    try:
        result.trust = exports.open_export(result.folder, sha256=sha256, pin_env=exports.pin_env_for(card),
                                           public_key=public_key).trust
        result.findings.append("trusted: " + result.trust)
    except UnsignedError as err:
        unsigned = str(err)
    except IntegrityError as err:
        result.problems.append(str(err))
        return result
    if exports.public_key_for(public_key, exports.pin_env_for(card)) is None:
        result.findings += _signature_note(result.folder)
    problems, result.pickle_note = _pickle_check(result.folder)
    result.problems += problems
    if unsigned and trust_unsigned:
        result.findings.append("UNSIGNED: nobody vouches for the card (not shipped, pinned or signed); accepted "
                               "because --trust-unsigned was given, as huskyai.load(trust_unsigned=True) would")
    elif unsigned:  # last: the pickle's problems stay first in a summary cut short
        result.problems.append(unsigned)
    return result


def _signature_note(folder: Path) -> list[str]:
    """A line about model.sig when no public key was given to check it: it is not what made the card trusted."""
    bundle = exports.read_signature(folder)
    if bundle is None:
        return []
    return [f"{exports.SIGNATURE_NAME}: an OMS signature, not checked (no public key given: --public-key, "
            f"or model_signing verify key {folder} --signature {folder / exports.SIGNATURE_NAME} --public_key KEY)"]


def _pickle_check(folder: Path) -> tuple[list[str], str | None]:
    """(problems, note) for the export's learner.pkl, judged without unpickling it; nothing if there is none."""
    pickle = folder / exports.LEARNER_NAME
    if not pickle.is_file() or pickle.is_symlink():
        return [], None
    from huskyai.trust.picklecheck import scan_pickle

    try:
        report = scan_pickle(pickle)
    except ImportError:  # a serving install: judging the pickle needs picklescan, from the redteam extra
        return [f"{exports.LEARNER_NAME}: not checked, picklescan is not installed: "
                "pip install 'huskyai[redteam]'"], None
    note = (f"{exports.LEARNER_NAME}: its {report.n_globals} imports are all within the Husky AI learner policy; "
            "that does not make a pickle safe (Husky AI never opens it)")
    return report.problems, note if report.clean else None


SIGN_WRITES = (exports.REDTEAM_NAME, exports.ONNX_NAME, exports.INT8_ONNX_NAME, exports.CARD_NAME)


@dataclass
class SignResult:
    folder: Path
    card_sha256: str  # pin it where this machine's key is not
    key: str  # where the key came from: the environment variable or the key file
    added_onnx: bool = False  # the export predated model.onnx, which signing added
    added_int8: bool = False  # model.int8.onnx was made (huskyai.training.quantize) and listed in the card
    fingerprint: str | None = None  # signed with a private key (model.sig): its public key's fingerprint


def sign(folder: str | Path | None = None, replace_signature: bool = False,
         redteam_report: str | Path | None = None,
         build: Callable[[dict, dict[str, bytes]], tuple[dict[str, bytes], dict]] | None = None,
         key_signature_follows: bool = False) -> SignResult:
    """Sign an export's card with this machine's key (made on first use), after verify's checks; with
    ``redteam_report`` (a red-team summary.json made for these weights) the card also hashes it as
    redteam.json; ``build(card, files)``, given the verified card and files, returns files to add (a graph
    made from the weights) and the card to sign (``huskyai.sign`` makes model.onnx and model.int8.onnx so).
    Raises IntegrityError with every problem when verify would refuse the export.

    Every file it writes is listed in the card it signs, and is written through huskyai.trust.writer: a
    destination that is a symlink or not a regular file is refused before anything is made or written.
    An export that carries model.sig is refused (the new card would no longer be the one it signs) unless
    ``key_signature_follows``: ``sign_with_key`` signs it again right after."""
    folder = exports.resolve(folder)
    card, problems, files = exports.check_files(folder)
    if card is not None and not key_signature_follows and exports.read_signature(folder) is not None:
        problems = problems + [f"{folder / exports.SIGNATURE_NAME}: an OMS signature of this card; signing with "
                               "this machine's key rewrites the card, which would break it. Sign with your private "
                               "key as well (huskyai sign DIR --key PRIVATE.pem), which signs both"]
    if card is not None and not problems:
        problems = _pickle_check(folder)[0]
    if card is not None and not problems and "signature" in card and not replace_signature:
        # a card signed with another key is not silently re-blessed
        problems = [p + " (after a key change, --replace-signature signs it anew)" for p in verify(folder).problems]
    if card is None or problems:
        raise IntegrityError("; ".join(problems))
    writer.check_destinations(folder, SIGN_WRITES)  # a planted link stops it before any slow work
    written: dict[str, bytes] = {}
    if redteam_report:
        written[exports.REDTEAM_NAME] = _redteam_report(folder, card, Path(redteam_report))
    key = signing_key(create=True)  # before the slow work: a key that cannot be had stops it
    if build is not None:
        made, card = build(dict(card), files)
        written |= made
    card["files"] = dict(card["files"], **{name: exports.sha256(data) for name, data in written.items()})
    writer.write_files(folder, written)
    card = writer.save_card(folder, card, key)
    return SignResult(folder, exports.sha256(writer.card_json(card)), key_source(),
                      exports.ONNX_NAME in written, exports.INT8_ONNX_NAME in written)


def _redteam_report(folder: Path, card: dict, report: Path) -> bytes:
    """A red-team summary.json's bytes, to go into the export as redteam.json, if it was made for these weights."""
    try:
        data = report.read_bytes()
        summary = json.loads(data)
    except (OSError, ValueError) as err:
        raise IntegrityError(f"{report}: cannot read the red-team summary ({err})") from None
    if not isinstance(summary, dict) or summary.get("weights_sha256") != card["files"][exports.WEIGHTS_NAME]:
        raise IntegrityError(f"{report}: this red-team summary was not made for the model in {folder}")
    return data


@dataclass
class KeySignResult:
    folder: Path
    card_sha256: str
    fingerprint: str  # of the public key that checks the signature (huskyai.trust.oms.fingerprint)
    signed: list[str]  # the files it covers: the card and every file the card lists


def sign_with_key(folder: str | Path | None, private_key: str | Path | bytes, password: bytes | None = None
                  ) -> KeySignResult:
    """Write model.sig, an OMS signature by ``private_key`` (a PEM file, or its bytes) of the card and every file
    it lists, after verify's checks of those files and of any learner.pkl: the digests signed are those of the
    bytes just checked. A card with this machine's HMAC must still be right. The card is not changed.
    IntegrityError with every problem when the export cannot be signed."""
    folder = exports.resolve(folder)
    read = exports.read_export(folder)
    problems = list(read.problems)
    if read.card is not None and not problems:
        problems = _pickle_check(folder)[0]
        key = signing_key()
        if "signature" in read.card and key is not None and not signature_ok(read.card, key):
            problems.append(f"{folder / exports.CARD_NAME}: its signature by this machine's key is wrong (the card "
                            "was edited after it was signed here); refusing to sign it")
    if read.card is None or problems:
        raise IntegrityError("; ".join(problems))
    writer.check_destinations(folder, [exports.SIGNATURE_NAME])
    digests = {exports.CARD_NAME: exports.sha256(read.card_bytes)}
    digests |= {name: exports.sha256(data) for name, data in read.files.items()}
    others = sorted(set(os.listdir(folder)) - set(digests) - {exports.SIGNATURE_NAME})
    bundle, fingerprint = oms.sign_digests(digests, folder.resolve().name, oms.read_key(private_key, "private key"),
                                           ignored=[exports.SIGNATURE_NAME, *others], password=password,
                                           where=str(private_key) if not isinstance(private_key, bytes)
                                           else "the private key")
    writer.write_file(folder, exports.SIGNATURE_NAME, bundle)
    return KeySignResult(folder, digests[exports.CARD_NAME], fingerprint, sorted(digests))
