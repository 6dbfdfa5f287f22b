"""Writing an export: plots, weights and ONNX graph, the model card, and the move into place.

The export is staged in a hidden, private folder inside ``out`` and moved in file by file
(huskyai.trust.writer.move_into_place), the old card removed first and the new one written last, so a crash
half-way never leaves a loadable mix. Every file is written through huskyai.trust.writer, which never follows a
link; a symlink or other non-regular file planted in ``out`` under an export's name is refused.
"""

from __future__ import annotations

import io
import platform
import shutil
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from fastai.learner import Learner

from huskyai.images.folders import PhotoSet, Sample
from huskyai.inference.preprocess import Preprocessing
from huskyai.network.net import HuskyNet
from huskyai.training.config import TrainConfig
from huskyai.training.plots import save_confusion_matrix, save_top_losses
from huskyai.trust import exports, keys, writer
from huskyai.trust.writer import move_into_place


def versions() -> dict[str, str]:
    import fastai
    import PIL
    import timm

    return {"python": platform.python_version(), "torch": torch.__version__, "fastai": fastai.__version__,
            "timm": timm.__version__, "pillow": PIL.__version__}


def save_weights_and_graph(model: HuskyNet, size: int, folder: Path) -> None:
    """model.safetensors, and the same network with its softmax as model.onnx (what serving runs)."""
    from safetensors.torch import save

    from huskyai.network.runtime import onnx_bytes

    weights = save({k: v.contiguous() for k, v in model.state_dict().items()})
    writer.write_file(folder, exports.WEIGHTS_NAME, weights)
    graph = onnx_bytes(torch.nn.Sequential(model, torch.nn.Softmax(dim=1)).eval(), size)
    writer.write_file(folder, exports.ONNX_NAME, graph)


def _plot(folder: Path, name: str, draw) -> None:
    """A plot drawn into memory by ``draw(file)`` and written as ``name`` through huskyai.trust.writer."""
    buffer = io.BytesIO()
    draw(buffer)
    writer.write_file(folder, name, buffer.getvalue())


def model_card(learn: Learner, photos: PhotoSet, data, held: list[Sample], config: TrainConfig, threshold: float,
               metrics: dict, seconds: float) -> dict:
    """The card of a trained Learner: what it is, how it preprocesses, how it did, what it learnt from."""
    arch, size = config.backbone()

    def counts(labels) -> dict[str, int]:
        labels = list(labels)
        return {c: labels.count(c) for c in photos.classes}

    return {
        "name": "Husky AI",
        "arch": arch.name,
        "classes": photos.classes,
        "positive_class": config.positive,
        **Preprocessing(size, arch.mean, arch.std).card_fields(),  # written by the module that reads it back
        "decision_threshold": 0.5,
        "threshold_folded_into_bias": threshold,
        **({"noise_sigma": config.noise_sigma} if config.noise_sigma else {}),  # what model.certify smooths with
        "metrics": metrics,
        "training": {
            "data": ", ".join(Path(d).resolve().name for d in ([data] if isinstance(data, (str, Path)) else data)),
            "data_fingerprint": photos.fingerprint(),
            "counts": counts(label for _, label in learn.dls.train.items),  # what the head was fitted on
            "validation_counts": counts(label for _, label in learn.dls.valid.items),
            "holdout_counts": counts(s.label for s in held),
            "skipped": [why for _, why in photos.skipped],
            "holdout_files": sorted(s.key for s in held),
            "holdout_fraction": config.holdout, "valid_pct": config.valid_pct, "seed": config.seed,
            "epochs": config.epochs, "lr": config.lr, "head_c": config.c, "junk_negatives": config.junk,
            "zero_shot_stage": learn.model.zero_shot,
            "pretrained_weights": str(config.weights) if config.weights else "default",
            "seconds": round(seconds, 1),
        },
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_export(out: str | Path, learn: Learner, card: dict, valid_probs: np.ndarray, config: TrainConfig,
                 report=print, int8_data: Sequence[str | Path] | None = None) -> dict:
    """Plots, weights, graph (and the pickle if asked) staged beside ``out``, the card signed, then all moved
    into place; returns the card as written. ``int8_data`` (the training photo folders): also a static INT8
    model.int8.onnx, calibrated on training photos that are not held out (huskyai.training.quantize)."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    writer.check_destinations(out, writer.NAMES)  # a link planted in out is refused before any work
    stage = Path(tempfile.mkdtemp(prefix=".export-", dir=out))  # same file system: files move atomically
    try:
        _plot(stage, "confusion_matrix.png",
              lambda f: save_confusion_matrix(card["metrics"]["validation"], card["classes"], f, "validation"))
        _plot(stage, "top_losses.png", lambda f: save_top_losses(learn, valid_probs, f))
        if config.pickle:
            report("warning: learner.pkl is a pickle: whoever loads it with fastai.load_learner runs "
                   "whatever it holds; share model.safetensors and model.json instead")
            learn.export(stage / exports.LEARNER_NAME)  # fastai writes it itself, into our own private stage
        save_weights_and_graph(learn.model, card["input_size"], stage)
        if int8_data:
            from huskyai.training.quantize import add_to_export

            report(f"quantizing {exports.ONNX_NAME} to INT8 (an option: fp32 stays the default)")
            card = add_to_export(stage, dict(card), (stage / exports.ONNX_NAME).read_bytes(), list(int8_data))
        card = writer.write_card(stage, card, keys.signing_key(create=True) if config.sign else None)
        move_into_place(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return card
