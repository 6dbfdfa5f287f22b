"""Husky AI: is this a husky?

    import huskyai
    model = huskyai.load()                  # the shipped model in export/
    print(model.predict("photo.jpg"))       # Prediction(label='husky', probability=0.97, scores={...})
"""

from .artifacts import IntegrityError
from .images import InvalidImageError
from .predictor import Prediction, Predictor, load

__all__ = ["load", "Predictor", "Prediction", "InvalidImageError", "IntegrityError"]
__version__ = "0.1.0"
