"""Husky AI: is this a husky?

    import huskyai
    model = huskyai.load()                  # the shipped model in export/
    print(model.predict("photo.jpg"))       # Prediction(label='husky', positive_probability=0.97, scores={...})

Every export is verified before use: the shipped one against the card hash pinned in this package,
others by signature, by a sha256 you pin, or by an explicit trust_unsigned=True.
"""

from .artifacts import IntegrityError
from .images import InvalidImageError
from .predictor import Prediction, Predictor, load


def load_learner(export_dir=None, sha256: str | None = None, trust_unsigned: bool = False):
    """fastai's Learner for an export, rebuilt from its verified weights: nothing is unpickled.
    (fastai is imported only when this is called.)"""
    from .learner import load_learner as _load_learner

    return _load_learner(export_dir, sha256=sha256, trust_unsigned=trust_unsigned)


__all__ = ["load", "load_learner", "Predictor", "Prediction", "InvalidImageError", "IntegrityError"]
__version__ = "0.1.0"
