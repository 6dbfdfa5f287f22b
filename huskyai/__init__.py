"""Husky AI: is this a husky?

    import huskyai
    model = huskyai.load()                  # the shipped model in export/ (huskyai.available_models())
    print(model.predict("photo.jpg"))       # Prediction(label='husky', positive_probability=0.97, scores={...})

Every export is verified before use: the shipped one against the card hash pinned in this package,
others by signature, by a sha256 you pin, or by an explicit trust_unsigned=True.

The API (huskyai.api: load, available_models, train, evaluate, verify, sign, score, load_learner) is what the
CLI calls; it is imported on first use, so ``import huskyai`` stays light (no torch, no fastai, no onnx).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from huskyai.errors import HuskyAIError, IntegrityError, InvalidImageError

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports them on first use
    from huskyai.api import (
        DoctorConfig,
        KeySignResult,
        Model,
        PushResult,
        ScoreSummary,
        SignResult,
        TrainConfig,
        TrainResult,
        VerifyResult,
        available_models,
        evaluate,
        load,
        load_learner,
        push,
        score,
        sign,
        train,
        verify,
    )
    from huskyai.inference.predictor import Prediction

__all__ = ["load", "available_models", "Model", "Prediction", "HuskyAIError", "InvalidImageError", "IntegrityError",
           "train", "TrainResult", "TrainConfig", "DoctorConfig", "evaluate", "verify", "VerifyResult", "sign",
           "SignResult", "KeySignResult", "push", "PushResult", "score", "ScoreSummary", "load_learner"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """The API's names (huskyai.api), imported on first use."""
    if name == "Prediction":
        from huskyai.inference.predictor import Prediction

        return Prediction
    if name in __all__:
        from huskyai import api

        return getattr(api, name)
    raise AttributeError(f"module 'huskyai' has no attribute {name!r}")
