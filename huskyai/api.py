"""The Python API that ``python -m huskyai`` is a thin skin over, as ultralytics' ``yolo`` is over ``YOLO()``.

    import huskyai
    run = huskyai.train("photos", "my_export", epochs=1)  # keywords: huskyai.TrainConfig's fields
    print(run.folder, run.metrics["validation"]["f1"])
    metrics = huskyai.evaluate("my_export", "test_photos", sheet="errors.png")
    checked = huskyai.verify("my_export")                 # .ok, .problems, .findings, .trust, .pickle_note
    huskyai.sign("my_export")                             # this machine's key; IntegrityError if verify refuses

Each command's defaults live once, here or in huskyai.config; the CLI reads them from there. This module
stays light: torch and fastai are imported inside the functions that train.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import DoctorConfig, TrainConfig
from .evaluation import evaluate
from .learner import load_learner
from .signing import SignResult, VerifyResult, sign, verify

DEFAULT_OUT = "export"  # where train writes, relative to the working directory

__all__ = ["train", "TrainResult", "TrainConfig", "DoctorConfig", "evaluate", "verify", "VerifyResult", "sign",
           "SignResult", "load_learner", "DEFAULT_OUT"]


@dataclass
class TrainResult:
    folder: Path  # the export folder, ready for huskyai.load(folder)
    card: dict  # its model card, as written to model.json

    @property
    def metrics(self) -> dict:
        """validation (and holdout, cv) metrics from the card."""
        return self.card["metrics"]


def train(data: str | Path | list[str | Path], out: str | Path = DEFAULT_OUT, report=print, **options) -> TrainResult:
    """Train on ``data`` (a folder with one sub-folder per label, e.g. husky/ and not_husky/, or several
    such folders) and export to ``out``, signed with this machine's key. ``options`` are TrainConfig's
    fields (``epochs=1``, ``holdout=0.2``, ``cv=3``, ...). A folder that cannot be used fails before torch
    and fastai are imported; a missing training extra fails with one line naming it."""
    from .training import train as run

    card = run(data, out, report=report, **options)
    return TrainResult(Path(out).resolve(), card)
