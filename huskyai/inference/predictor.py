"""Prediction from an export/ folder: verified, no pickle, no fastai.

Photos are decoded by huskyai.images.decode and prepared by huskyai.inference.preprocess, the module fastai's
validation path calls too, so probabilities match ``learn.predict`` on the same photo.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from huskyai import settings
from huskyai.errors import EngineError, IntegrityError
from huskyai.images.decode import ImageInput, load_image
from huskyai.inference.engine import Engine, create_engine
from huskyai.inference.preprocess import Preprocessing
from huskyai.settings import PRECISION_ENV
from huskyai.trust import exports

GRAPHS = {"fp32": exports.ONNX_NAME, "int8": exports.INT8_ONNX_NAME}


def graph_for(export: exports.VerifiedExport, precision: str | None, engine: str) -> tuple[str, bytes | None]:
    """(precision, verified graph bytes) for ``precision`` (default: $HUSKYAI_PRECISION, else "fp32").
    fp32 stays the default: on the held-out photos the INT8 graph moved P(husky) by more than its 0.02 bound
    (bench/quantize.py)."""
    precision = (precision or settings.precision() or "fp32").strip().lower()
    if precision not in GRAPHS:
        raise EngineError(f"unknown precision {precision!r}: use 'fp32' or 'int8' (${PRECISION_ENV})")
    if precision == "int8":
        if engine == "torch":
            raise EngineError("precision 'int8' runs on ONNX Runtime; engine 'torch' is fp32 only")
        if exports.INT8_ONNX_NAME not in export.files:
            raise EngineError(f"{export.folder}: this export has no {exports.INT8_ONNX_NAME} (add one with "
                              "huskyai.sign(DIR, int8_data=[PHOTO FOLDERS]))")
    return precision, export.files.get(GRAPHS[precision])


@dataclass(frozen=True)
class Prediction:
    label: str  # the decided class (against the card's threshold)
    positive_probability: float  # P(the positive class, e.g. "husky"), whatever the label says
    scores: dict[str, float]  # every class -> probability


class Predictor:
    """A loaded Husky AI model. Use :func:`huskyai.load` to get one."""

    def __init__(self, export_dir: str | Path | None = None, engine: str = "auto", sha256: str | None = None,
                 trust_unsigned: bool = False, threads: int | None = None, precision: str | None = None,
                 torch_engine: Callable[[str, int, bytes], Engine] | None = None):
        export = exports.open_export(export_dir, sha256=sha256, trust_unsigned=trust_unsigned,
                                       pin_env=exports.MODEL_SHA256_ENV)  # the husky model's pin, not the mood's
        self.export_dir = export.folder
        self.card = export.card
        if exports.WEIGHTS_NAME not in export.files:
            raise IntegrityError(f"{self.export_dir}: the model card lists no {exports.WEIGHTS_NAME}")
        self.trust: str = export.trust  # why this model was believed: pinned, shipped, signed or trusted by hand
        self.model_sha256: str = export.card_sha256  # the card hashes every file: the model's identity
        self.classes: list[str] = list(self.card["classes"])
        self.positive: str = self.card["positive_class"]
        self.threshold: float = float(self.card.get("decision_threshold", 0.5))
        # photo -> network input, from the card's fields (the red-team kit and explanations use it too)
        self.preprocessing = Preprocessing.from_card(self.card)
        self.size: int = self.preprocessing.size
        self.mean: np.ndarray = self.preprocessing.mean_array  # (3, 1, 1) float32
        self.std: np.ndarray = self.preprocessing.std_array
        # built from the very bytes that were hashed; the big ones are not kept
        self.precision, graph = graph_for(export, precision, engine)  # "fp32" or "int8": the graph that serves
        self.engine = create_engine(engine, self.card["arch"], len(self.classes), export.files[exports.WEIGHTS_NAME],
                                    graph, threads, torch_engine=torch_engine)
        self._extras = {name: data for name, data in export.files.items()
                        if name not in (exports.WEIGHTS_NAME, *GRAPHS.values(), exports.LEARNER_NAME)}

    def artifact(self, name: str) -> bytes | None:
        """The verified bytes of an extra file the card lists (a plot, redteam.json), else None."""
        return self._extras.get(name)

    def preprocess(self, source: ImageInput, name: str | None = None) -> np.ndarray:
        """A CHW float32 array ready for the network; InvalidImageError for anything unreadable."""
        return self.preprocessing.array(load_image(source, name))

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities for a preprocessed NCHW float32 batch."""
        return self.engine(np.ascontiguousarray(batch, dtype=np.float32))

    def to_prediction(self, probs: np.ndarray) -> Prediction:
        """The Prediction for one row of class probabilities, decided against the card's threshold."""
        scores = {c: float(p) for c, p in zip(self.classes, probs)}
        p_pos = scores[self.positive]
        if len(self.classes) == 2:
            label = self.positive if p_pos >= self.threshold else next(c for c in self.classes if c != self.positive)
        else:
            label = max(scores, key=scores.get)
        return Prediction(label, p_pos, scores)

    def predict(self, source: ImageInput, name: str | None = None) -> Prediction:
        """Classify one photo: a path, bytes, a PIL image or a numpy array (HxWx3 uint8).

        ``name`` is how error messages call the photo (default: the file name, or "image").
        """
        return self.to_prediction(self.probabilities(self.preprocess(source, name)[None])[0])

    def predict_batch(self, sources: Iterable[ImageInput], batch_size: int = 1) -> list[Prediction]:
        """Classify many photos; an unreadable one raises InvalidImageError naming it.

        Decoding runs in a background thread while the engine works on the photos before (Pillow
        releases the GIL): 12.5 ms a photo against 21.6 ms one by one, on 2 cores. ``batch_size``
        is the number of photos per engine call; with ONNX Runtime on 2 cores, 1 measured fastest
        (2 to 16: 16 to 17 ms a photo, and memory grows with it).
        """
        out: list[Prediction] = []
        arrays = self._preprocessed(sources, ahead=batch_size)
        while chunk := list(islice(arrays, batch_size)):
            out += [self.to_prediction(p) for p in self.probabilities(np.stack(chunk))]
        return out

    def _preprocessed(self, sources: Iterable[ImageInput], ahead: int) -> Iterator[np.ndarray]:
        """Preprocessed arrays in order, decoded at most ``ahead`` photos in advance."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: deque = deque()
            for source in sources:
                pending.append(pool.submit(self.preprocess, source))
                if len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def __repr__(self) -> str:
        return (f"Predictor({self.card['arch']}, classes={self.classes}, engine={self.engine.name}, "
                f"precision={self.precision}, from {self.export_dir})")


def load(export_dir: str | Path | None = None, engine: str = "auto", sha256: str | None = None,
         trust_unsigned: bool = False, threads: int | None = None, precision: str | None = None,
         torch_engine: Callable[[str, int, bytes], Engine] | None = None) -> Predictor:
    """Load the shipped model (or the export folder ``export_dir``) once its card is trusted and every
    file matches it; IntegrityError otherwise.

    A card is trusted when its sha256 is ``sha256`` (or $HUSKYAI_MODEL_SHA256, the husky model's own pin), is
    the shipped one pinned in this package, carries this machine's signature, or ``trust_unsigned`` is given.
    Every ONNX graph it lists must keep to the graph policy (huskyai.trust.graphpolicy).
    ``engine``: "auto" (ONNX Runtime on the export's graph; torch for an old export without one), "onnx" or
    "torch", which need ``torch_engine`` (huskyai.load passes huskyai.network's);
    ``threads``: ONNX Runtime's threads for one call (default: every core; a pool of processes wants 1).
    ``precision``: "fp32" (the default) or "int8", the export's model.int8.onnx when it has one
    (default: $HUSKYAI_PRECISION, else "fp32").
    ``export_dir`` may also name a shipped model ("husky").
    """
    return Predictor(export_dir, engine, sha256=sha256, trust_unsigned=trust_unsigned, threads=threads,
                     precision=precision, torch_engine=torch_engine)
