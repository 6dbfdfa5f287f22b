"""Checking an export as a whole (``huskyai.verify``) and signing it with this machine's key (``huskyai.sign``).

verify reports instead of raising: every file against the card, who vouches for the card, and what a
learner.pkl would import (information only: Husky AI never opens it); it fails wherever huskyai.load
would refuse, an unsigned card included. sign refuses whatever verify refuses but the missing signature
it is there to add, so it never blesses a changed file, a pickle that imports more than a learner needs,
or a card signed with another key (unless told to replace that signature). It writes only files the card
it signs lists, and only through huskyai.safewrite.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import artifacts, safewrite
from .errors import IntegrityError, UnsignedError


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


def verify(folder: str | Path | None = None, sha256: str | None = None,
           trust_unsigned: bool = False) -> VerifyResult:
    """Check an export folder (default: the shipped model) without loading it: its files against the
    card, then whether the card is trusted (pinned by ``sha256``, shipped or signed), then any pickle.
    Where ``huskyai.load`` would refuse the export, so does verify (a problem, ``.ok`` False); an unsigned
    card is only a finding with ``trust_unsigned``, as ``load(trust_unsigned=True)`` accepts it."""
    result = VerifyResult(artifacts.resolve(folder))
    card, result.problems, _ = artifacts.check_files(result.folder)
    if card is None or result.problems:
        return result
    result.findings.append(f"every file in {result.folder} matches its model card ({', '.join(card['files'])})")
    unsigned = None
    try:
        result.trust = artifacts.open_export(result.folder, sha256=sha256, pin_env=artifacts.pin_env_for(card)).trust
        result.findings.append("trusted: " + result.trust)
    except UnsignedError as err:
        unsigned = str(err)
    except IntegrityError as err:
        result.problems.append(str(err))
        return result
    problems, result.pickle_note = _pickle_check(result.folder)
    result.problems += problems
    if unsigned and trust_unsigned:
        result.findings.append("UNSIGNED: nobody vouches for the card (not shipped, pinned or signed); accepted "
                               "because --trust-unsigned was given, as huskyai.load(trust_unsigned=True) would")
    elif unsigned:  # last: the pickle's problems stay first in a summary cut short
        result.problems.append(unsigned)
    return result


def _pickle_check(folder: Path) -> tuple[list[str], str | None]:
    """(problems, note) for the export's learner.pkl, judged without unpickling it; nothing if there is none."""
    pickle = folder / artifacts.LEARNER_NAME
    if not pickle.is_file() or pickle.is_symlink():
        return [], None
    from .picklecheck import scan_pickle

    try:
        report = scan_pickle(pickle)
    except ImportError:  # a serving install: judging the pickle needs picklescan, from the redteam extra
        return [f"{artifacts.LEARNER_NAME}: not checked, picklescan is not installed: "
                "pip install 'huskyai[redteam]'"], None
    note = (f"{artifacts.LEARNER_NAME}: its {report.n_globals} imports are all within the Husky AI learner policy; "
            "that does not make a pickle safe (Husky AI never opens it)")
    return report.problems, note if report.clean else None


@dataclass
class SignResult:
    folder: Path
    card_sha256: str  # pin it where this machine's key is not
    key: str  # where the key came from: the environment variable or the key file
    added_onnx: bool = False  # the export predated model.onnx, which signing added
    added_int8: bool = False  # model.int8.onnx was made (huskyai.quantize) and listed in the card


def sign(folder: str | Path | None = None, replace_signature: bool = False,
         redteam_report: str | Path | None = None, int8_data: Sequence[str | Path] | None = None,
         reduce_range: bool = False, int8_photos: int | None = None) -> SignResult:
    """Sign an export's card with this machine's key (made on first use), after verify's checks; with
    ``redteam_report`` (a red-team summary.json made for these weights) the card also hashes it as
    redteam.json; with ``int8_data`` (the training photo folders) the export also gets model.int8.onnx,
    calibrated on ``int8_photos`` training photos (default 128) that are not among the card's held-out
    ones (``reduce_range``: 7-bit weights, for AVX2 CPUs without VNNI). Raises IntegrityError
    with every problem when verify would refuse the export.

    Every file it writes is listed in the card it signs, and is written through huskyai.safewrite: a
    destination that is a symlink or not a regular file is refused before anything is made or written."""
    folder = artifacts.resolve(folder)
    card, problems, files = artifacts.check_files(folder)
    if card is not None and not problems:
        problems = _pickle_check(folder)[0]
    if card is not None and not problems and "signature" in card and not replace_signature:
        # a card signed with another key is not silently re-blessed
        problems = [p + " (after a key change, --replace-signature signs it anew)" for p in verify(folder).problems]
    if card is None or problems:
        raise IntegrityError("; ".join(problems))
    added_onnx = artifacts.ONNX_NAME not in files
    new = [name for name, wanted in ((artifacts.REDTEAM_NAME, redteam_report), (artifacts.ONNX_NAME, added_onnx),
                                     (artifacts.INT8_ONNX_NAME, int8_data)) if wanted]
    safewrite.check_destinations(folder, [*new, artifacts.CARD_NAME])
    written: dict[str, bytes] = {}
    if redteam_report:
        written[artifacts.REDTEAM_NAME] = _redteam_report(folder, card, Path(redteam_report))
    key = artifacts.signing_key(create=True)  # before the slow work: a key that cannot be had stops it
    if added_onnx:
        written[artifacts.ONNX_NAME] = _onnx_graph(card, files)
    if int8_data:
        from .quantize import int8_for_export

        written[artifacts.INT8_ONNX_NAME], card = int8_for_export(
            card, written.get(artifacts.ONNX_NAME) or files[artifacts.ONNX_NAME], list(int8_data),
            reduce_range=reduce_range, **({"count": int8_photos} if int8_photos else {}))
    card["files"] = dict(card["files"], **{name: artifacts.sha256(data) for name, data in written.items()})
    safewrite.write_files(folder, written)
    card = safewrite.save_card(folder, card, key)
    env = artifacts.SIGNING_KEY_ENV
    return SignResult(folder, artifacts.sha256(safewrite.card_json(card)),
                      f"${env}" if os.environ.get(env) else str(artifacts.key_path()), added_onnx, bool(int8_data))


def _redteam_report(folder: Path, card: dict, report: Path) -> bytes:
    """A red-team summary.json's bytes, to go into the export as redteam.json, if it was made for these weights."""
    try:
        data = report.read_bytes()
        summary = json.loads(data)
    except (OSError, ValueError) as err:
        raise IntegrityError(f"{report}: cannot read the red-team summary ({err})") from None
    if not isinstance(summary, dict) or summary.get("weights_sha256") != card["files"][artifacts.WEIGHTS_NAME]:
        raise IntegrityError(f"{report}: this red-team summary was not made for the model in {folder}")
    return data


def _onnx_graph(card: dict, files: dict[str, bytes]) -> bytes:
    """An export made before 2026-11-28 gets the ONNX graph it now ships, built from its verified weights."""
    from .engine import onnx_bytes, torch_network
    from .extras import require

    require("train", f"adding {artifacts.ONNX_NAME} to an export that predates it")
    net = torch_network(card["arch"], len(card["classes"]), files[artifacts.WEIGHTS_NAME])
    return onnx_bytes(net, int(card["input_size"]))
