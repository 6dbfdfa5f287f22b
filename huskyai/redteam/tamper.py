"""Tampering with a copy of an export: the backdoored bias and the poisoned pickle, and what stops them."""

from __future__ import annotations

import shutil
from pathlib import Path


def edit_bias(export_dir: Path, positive_index: int, shift: float = 5.0) -> None:
    """The backdoor of the Husky AI series: nudge the final layer towards the positive class."""
    from safetensors.torch import load_file, save_file

    path = export_dir / "model.safetensors"
    weights = load_file(str(path))
    weights["head.bias"][positive_index] += shift
    save_file(weights, str(path))


def inject_pickle_payload(export_dir: Path, command: str) -> None:
    """Insert ``os.system(command)`` into learner.pkl the way fickling does (fickling required)."""
    try:
        from fickling.pytorch import PyTorchModelWrapper
    except ImportError:
        raise RuntimeError("the pickle injection uses fickling: pip install fickling") from None
    evil = export_dir / "learner.evil.pkl"
    PyTorchModelWrapper(export_dir / "learner.pkl").inject_payload(f"import os; os.system({command!r})", evil,
                                                                  injection="insertion")
    evil.replace(export_dir / "learner.pkl")


def _outcome(fn) -> str:
    try:
        fn()
    except Exception as err:  # noqa: BLE001 - the refusal is the point; its text is the report
        return f"refused: {type(err).__name__}: {str(err)[:200]}"
    return "ACCEPTED"


def tamper_attack(export_dir: Path, work: Path) -> dict:
    """Both tamperings, each on its own copy; returns how load, load_learner and verify reacted."""
    import huskyai

    from ..artifacts import verify_all
    from ..picklecheck import scan_pickle

    work.mkdir(parents=True, exist_ok=True)
    result = {}
    bias = work / "bias_backdoor"
    shutil.rmtree(bias, ignore_errors=True)
    shutil.copytree(export_dir, bias)
    card_classes = huskyai.load(export_dir).classes
    edit_bias(bias, len(card_classes) - 1)
    result["bias_backdoor"] = {"load": _outcome(lambda: huskyai.load(bias)),
                               "verify": "refused: " + "; ".join(verify_all(bias)) if verify_all(bias)
                               else "ACCEPTED"}
    pickled = work / "pickle_payload"
    shutil.rmtree(pickled, ignore_errors=True)
    shutil.copytree(export_dir, pickled)
    marker = work / "PAYLOAD_RAN"
    marker.unlink(missing_ok=True)
    inject_pickle_payload(pickled, f"touch {marker}")
    scan = scan_pickle(pickled / "learner.pkl")
    problems = verify_all(pickled) + scan.problems
    result["pickle_payload"] = {
        "load": _outcome(lambda: huskyai.load(pickled)),
        "load_learner": _outcome(lambda: huskyai.load_learner(pickled)),
        "verify": "refused: " + "; ".join(problems) if problems else "ACCEPTED",
        "payload_ran": marker.exists(),
    }
    result["all_refused"] = all(v.startswith("refused") for part in ("bias_backdoor", "pickle_payload")
                                for k, v in result[part].items() if k != "payload_ran") \
        and not result["pickle_payload"]["payload_ran"]
    return result
