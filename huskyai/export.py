"""Writing an export: weights and ONNX graph, the model card, and the move into place.

The export is staged in a hidden folder inside ``out`` and moved in file by file, the old card
removed first and the new one written last, so a crash half-way never leaves a loadable mix.
"""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import artifacts
from .data import PhotoSet, Sample
from .model import HuskyNet


def versions() -> dict[str, str]:
    import fastai
    import PIL
    import timm

    return {"python": platform.python_version(), "torch": torch.__version__, "fastai": fastai.__version__,
            "timm": timm.__version__, "pillow": PIL.__version__}


def save_weights_and_graph(model: HuskyNet, size: int, folder: Path) -> None:
    """model.safetensors, and the same network with its softmax as model.onnx (what serving runs)."""
    from safetensors.torch import save_file

    from .engine import onnx_bytes

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / artifacts.WEIGHTS_NAME))
    graph = onnx_bytes(torch.nn.Sequential(model, torch.nn.Softmax(dim=1)).eval(), size)
    (folder / artifacts.ONNX_NAME).write_bytes(graph)


def move_into_place(stage: Path, out: Path) -> None:
    """Replace the export in ``out`` by the staged one; only the export's own files are touched.
    The old card goes first and the new one last, so a crash half-way leaves no loadable mix."""
    (out / artifacts.CARD_NAME).unlink(missing_ok=True)
    for name in artifacts.EXPORT_NAMES:
        if (stage / name).is_file():
            os.replace(stage / name, out / name)
        else:
            (out / name).unlink(missing_ok=True)  # no file of an older model may linger
    os.replace(stage / artifacts.CARD_NAME, out / artifacts.CARD_NAME)


def model_card(arch_info, photos: PhotoSet, positive: str, size: int, threshold: float, metrics: dict, data,
          held: list[Sample], dls, settings: dict) -> dict:
    def counts(labels) -> dict[str, int]:
        labels = list(labels)
        return {c: labels.count(c) for c in photos.classes}

    return {
        "name": "Husky AI",
        "arch": arch_info.name,
        "classes": photos.classes,
        "positive_class": positive,
        "input_size": size,
        "resize": {"method": "crop", "resample": "bilinear",
                   "description": "centre crop to a square, then resize (fastai Resize, validation mode)"},
        "normalization": {"mean": list(arch_info.mean), "std": list(arch_info.std)},
        "decision_threshold": 0.5,
        "threshold_folded_into_bias": threshold,
        "metrics": metrics,
        "training": {
            "data": ", ".join(Path(d).resolve().name for d in ([data] if isinstance(data, (str, Path)) else data)),
            "data_fingerprint": photos.fingerprint(),
            "counts": counts(label for _, label in dls.train.items),  # what the head was fitted on
            "validation_counts": counts(label for _, label in dls.valid.items),
            "holdout_counts": counts(s.label for s in held),
            "skipped": [why for _, why in photos.skipped],
            "holdout_files": sorted(s.key for s in held),
            **settings,
        },
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
