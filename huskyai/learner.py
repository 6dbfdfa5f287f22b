"""fastai's Learner from an export folder, for fastai users: verified before a byte is unpickled."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from . import artifacts
from .picklecheck import scan_pickle

if TYPE_CHECKING:
    from fastai.learner import Learner


def load_learner(export_dir: str | Path | None = None) -> Learner:
    """fastai's ``load_learner`` on export/learner.pkl, once its sha256 matches the (signed) card and
    its imports pass the pickle policy; IntegrityError otherwise, naming the file."""
    export_dir = Path(export_dir) if export_dir else artifacts.DEFAULT_EXPORT
    card = artifacts.read_card(export_dir)
    path = artifacts.verify_file(export_dir, card, artifacts.LEARNER_NAME)
    report = scan_pickle(path)
    if not report.clean:
        raise artifacts.IntegrityError(f"{path}: refusing to unpickle: " + "; ".join(report.problems))
    from fastai.learner import load_learner as fastai_load_learner

    return fastai_load_learner(path)
