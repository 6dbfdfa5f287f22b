"""Prediction from an export/ folder: verified, no pickle, no fastai.

Preprocessing repeats fastai's validation path exactly (decode, centre crop, bilinear resize,
scale to [0, 1], normalise), so probabilities match ``learn.predict`` on the same photo.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import artifacts
from .images import ImageInput, load_image


@dataclass(frozen=True)
class Prediction:
    label: str  # the decided class
    probability: float  # probability of the positive class (e.g. "husky")
    scores: dict[str, float]  # every class -> probability

    @property
    def is_positive(self) -> bool:
        return self.probability >= 0.5 if len(self.scores) == 2 else self.label == max(self.scores, key=self.scores.get)


def centre_crop_resize(img: Image.Image, size: int) -> Image.Image:
    """fastai's ``Resize(size)`` in validation mode: the largest centred square, resized bilinearly."""
    w, h = img.size
    m = w / size if w / size < h / size else h / size
    crop = int(m * size)
    left, top = int(0.5 * (w - crop)), int(0.5 * (h - crop))
    return img.crop((left, top, left + crop, top + crop)).resize((size, size), Image.BILINEAR)


class Predictor:
    """A loaded Husky AI model. Use :func:`huskyai.load` to get one."""

    def __init__(self, export_dir: str | Path | None = None):
        self.export_dir = Path(export_dir) if export_dir else artifacts.DEFAULT_EXPORT
        self.card = artifacts.read_card(self.export_dir)
        weights = artifacts.verify_file(self.export_dir, self.card, artifacts.WEIGHTS_NAME)
        self.classes: list[str] = list(self.card["classes"])
        self.positive: str = self.card["positive_class"]
        self.threshold: float = float(self.card.get("decision_threshold", 0.5))
        self.size: int = int(self.card["input_size"])
        norm = self.card["normalization"]
        self._mean = np.array(norm["mean"], dtype=np.float32).reshape(3, 1, 1)
        self._std = np.array(norm["std"], dtype=np.float32).reshape(3, 1, 1)
        self.model_sha256: str = self.card["files"][artifacts.WEIGHTS_NAME]
        self._net = _load_torch_model(self.card["arch"], len(self.classes), weights)

    def preprocess(self, source: ImageInput) -> np.ndarray:
        """A CHW float32 array ready for the network; InvalidImageError for anything unreadable."""
        img = centre_crop_resize(load_image(source), self.size)
        x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return (x - self._mean) / self._std

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._net(torch.from_numpy(batch)).softmax(1).numpy()

    def _to_prediction(self, probs: np.ndarray) -> Prediction:
        scores = {c: float(p) for c, p in zip(self.classes, probs)}
        p_pos = scores[self.positive]
        if len(self.classes) == 2:
            label = self.positive if p_pos >= self.threshold else next(c for c in self.classes if c != self.positive)
        else:
            label = max(scores, key=scores.get)
        return Prediction(label, p_pos, scores)

    def predict(self, source: ImageInput) -> Prediction:
        """Classify one photo: a path, bytes, a PIL image or a numpy array (HxWx3 uint8)."""
        return self._to_prediction(self.probabilities(self.preprocess(source)[None])[0])

    def predict_batch(self, sources: Iterable[ImageInput], batch_size: int = 32) -> list[Prediction]:
        """Classify many photos; an unreadable one raises InvalidImageError naming it."""
        out: list[Prediction] = []
        chunk: list[np.ndarray] = []
        for source in sources:
            chunk.append(self.preprocess(source))
            if len(chunk) == batch_size:
                out += self._flush(chunk)
        return out + self._flush(chunk)

    def _flush(self, chunk: list[np.ndarray]) -> list[Prediction]:
        if not chunk:
            return []
        probs = self.probabilities(np.stack(chunk))
        chunk.clear()
        return [self._to_prediction(p) for p in probs]

    def __repr__(self) -> str:
        return f"Predictor({self.card['arch']}, classes={self.classes}, from {self.export_dir})"


def _load_torch_model(arch: str, n_classes: int, weights: Path):
    from safetensors.torch import load_file

    from .model import build_model

    net = build_model(arch, n_classes)
    net.load_state_dict(load_file(str(weights)), strict=True)
    return net.eval()


def load(export_dir: str | Path | None = None) -> Predictor:
    """Load the shipped model (or the export folder ``export_dir``), verified against its card."""
    return Predictor(export_dir)

