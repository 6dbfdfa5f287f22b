"""Husky AI: is this a husky?

    import huskyai
    model = huskyai.load()                  # the shipped model in export/
    print(model.predict("photo.jpg"))       # Prediction(label='husky', probability=0.97, scores={...})
"""

from .artifacts import IntegrityError
from .images import InvalidImageError
from .predictor import Prediction, Predictor, load


def load_learner(export_dir=None):  # -> fastai.learner.Learner (fastai is imported only when called)
    """fastai's Learner from an export folder, its pickle verified against the card first."""
    from .learner import load_learner as _load_learner

    return _load_learner(export_dir)


__all__ = ["load", "load_learner", "Predictor", "Prediction", "InvalidImageError", "IntegrityError"]
__version__ = "0.1.0"
