"""Husky AI: is this a husky?

    import huskyai
    model = huskyai.load()                  # the shipped model in export/
    print(model.predict("photo.jpg"))       # Prediction(label='husky', positive_probability=0.97, scores={...})

Every export is verified before use: the shipped one against the card hash pinned in this package,
others by signature, by a sha256 you pin, or by an explicit trust_unsigned=True.

train, evaluate, verify, sign and load_learner (huskyai.api) are what the CLI calls; they are imported
on first use, so ``import huskyai`` stays light (no torch, no fastai).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .artifacts import IntegrityError
from .images import InvalidImageError
from .predictor import Prediction, Predictor, load

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports them on first use
    from .api import (
        DoctorConfig,
        SignResult,
        TrainConfig,
        TrainResult,
        VerifyResult,
        evaluate,
        load_learner,
        sign,
        train,
        verify,
    )

__all__ = ["load", "Predictor", "Prediction", "InvalidImageError", "IntegrityError",
           "train", "TrainResult", "TrainConfig", "DoctorConfig", "evaluate", "verify", "VerifyResult", "sign",
           "SignResult", "load_learner"]


def __getattr__(name: str):
    """The API's names that are not imported above (huskyai.api), imported on first use."""
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'huskyai' has no attribute {name!r}")
__version__ = "0.1.0"
