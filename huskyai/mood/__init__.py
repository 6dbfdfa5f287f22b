"""The second model: predict a day's mood from a daily diary (tabular), with the husky model's shape:
sample (a synthetic diary), train honestly by time, export with a card, verify, serve, explain, attack.

``huskyai.mood.load(folder).predict({"sleep_hours": 8, ...})`` needs only numpy, pandas and onnxruntime.
"""

from huskyai.mood.model import MoodModel, MoodPrediction, load

__all__ = ["MoodModel", "MoodPrediction", "load"]
