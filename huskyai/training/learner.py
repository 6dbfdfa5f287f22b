"""fastai's Learner from an export folder, for fastai users, rebuilt without unpickling anything.

No scan can make a cloudpickle file safe (it can rebuild any function), so Husky AI never opens
learner.pkl: the Learner is made from code, the trusted card and the verified safetensors bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from huskyai.errors import IntegrityError
from huskyai.extras import require
from huskyai.trust import exports

if TYPE_CHECKING:
    from fastai.learner import Learner


def load_learner(export_dir: str | Path | None = None, sha256: str | None = None,
                 trust_unsigned: bool = False) -> Learner:
    """fastai's ``Learner`` for an export: trusted and verified as ``huskyai.load`` does, never unpickled.

    ``learn.predict(photo)`` agrees with ``huskyai.load().predict``; ``learn.export(path)`` writes a
    pickle for plain fastai users (who then run whatever that file holds when they load it)."""
    require("train", "huskyai.load_learner")
    export = exports.open_export(export_dir, sha256=sha256, trust_unsigned=trust_unsigned)
    if exports.WEIGHTS_NAME not in export.files:
        raise IntegrityError(f"{export.folder}: the model card lists no {exports.WEIGHTS_NAME}")
    from huskyai.training.dataloaders import learner_from_card

    return learner_from_card(export.card, export.files[exports.WEIGHTS_NAME])
