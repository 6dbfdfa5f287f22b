"""Tampering with a copy of an export as an attacker would: a backdoored bias (with and without
rewriting the card's hashes) and a poisoned pickle, and what stops them."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

from huskyai.trust import exports, writer


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
        return f"refused: {type(err).__name__}: {str(err)[:200]}"
    return "ACCEPTED"


def _verify(folder: Path) -> str:
    from huskyai.trust.signing import verify

    result = verify(folder)
    return "ACCEPTED" if result.ok else f"refused: {'; '.join(result.problems)[:300]}"


def _fresh_copy(export_dir: Path, dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(export_dir, dest, symlinks=True)
    return dest


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
    result["all_refused"] = (
        all(v.startswith("refused") for part in ("bias_backdoor", "bias_backdoor_rehashed")
            for v in result[part].values())
        and result["pickle_payload"]["verify"].startswith("refused") and not marker.exists())
    return result
