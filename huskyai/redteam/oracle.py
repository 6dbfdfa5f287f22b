"""The victim as an outsider sees it: a ``predict(image)`` that answers what the API reveals.

Two ways in: :class:`PredictorOracle`, the Python predictor with its answers cut to an API detail level
(full probabilities, rounded ones, or the label only: the app's HUSKYAI_API_DETAIL, emulated in one
function, :func:`reveal`, with the app's own rounding from huskyai.inference.disclosure), and :class:`AppOracle`, a
running app on loopback spoken to over raw HTTP (huskyai.redteam.client) that answers at the app's own
setting. Both count their queries.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from huskyai.inference.disclosure import rounded
from huskyai.inference.predictor import Prediction, Predictor
from huskyai.settings import API_DETAILS as DETAILS


def reveal(scores: dict[str, float], label: str, detail: str) -> dict[str, float]:
    """What an API at ``detail`` shows of ``scores``: all of it, rounded as the app rounds, or a one-hot label."""
    if detail == "full":
        return dict(scores)
    if detail == "rounded":
        return {c: rounded(p) for c, p in scores.items()}
    if detail == "label":
        return {c: float(c == label) for c in scores}
    raise ValueError(f"unknown API detail {detail!r}; choose one of: {', '.join(DETAILS)}")


class PredictorOracle:
    """The Python predictor, answering at an emulated API ``detail``; inputs are HxWx3 uint8 images."""

    def __init__(self, predictor: Predictor, detail: str = "full"):
        reveal({}, "", detail)  # refuse an unknown level now, not at the first query
        self.predictor, self.detail, self.queries = predictor, detail, 0
        self.preprocessing, self.classes = predictor.preprocessing, predictor.classes
        self.positive = predictor.positive

    def predict(self, image) -> Prediction:
        self.queries += 1
        pred = self.predictor.predict(image)
        scores = reveal(pred.scores, pred.label, self.detail)
        return Prediction(pred.label, scores[self.positive], scores)


class AppOracle:
    """A running Husky AI app at ``url``: each query uploads the image as PNG and calls /predict."""

    def __init__(self, url: str, like: Predictor, address: str = "127.0.0.1"):
        from huskyai.redteam.client import client_from

        self.url = url if url.endswith("/") else url + "/"
        self.http = client_from(address)
        self.preprocessing, self.classes, self.positive = like.preprocessing, like.classes, like.positive
        self.detail, self.queries = "app", 0

    def predict(self, image) -> Prediction:
        from huskyai.redteam.client import raw_predict

        buf = io.BytesIO()
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, "PNG")
        self.queries += 1
        scores_json, verdict = raw_predict(self.url, buf.getvalue(), client=self.http, name="query.png")
        return self.parse(scores_json, verdict)

    def parse(self, scores_json, verdict: str) -> Prediction:
        """gradio's Label JSON ({"label", "confidences"}) and the verdict text -> a Prediction; with no
        confidences (label only) the scores are one-hot."""
        label = scores_json.get("label") if isinstance(scores_json, dict) else None
        if label not in self.classes:  # then the verdict says it: "Husky, 97%" or "Not a husky"
            negative = next(c for c in self.classes if c != self.positive)
            label = negative if str(verdict).lower().startswith("not") else self.positive
        confidences = scores_json.get("confidences") if isinstance(scores_json, dict) else None
        scores = {c: float(c == label) for c in self.classes}
        for item in confidences or []:
            if item.get("label") in scores:
                scores[item["label"]] = float(item["confidence"])
        return Prediction(label, scores[self.positive], scores)

    def close(self) -> None:
        self.http.close()
