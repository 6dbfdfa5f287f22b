"""Concurrent predictions share one engine: a small queue of our own in front of the predictor.

Each request decodes and preprocesses its own photo in its own thread (Pillow releases the GIL, so
decoding runs beside the engine), and a bad photo fails there, for that request alone; gradio's
``batch=True`` would fail the whole batch. Then the request waits for the one engine thread, which
runs whatever is queued, up to ``max_batch`` photos, as one call: ONNX Runtime already uses every
core for one call, so two calls at once only fight over them.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from huskyai.images.decode import ImageInput
from huskyai.inference.predictor import Prediction, Predictor


class EngineQueue:
    """``predict`` like the model's, safe to call from many threads; engine calls run one at a time."""

    def __init__(self, model: Predictor, max_batch: int = 4):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.model = model
        self.max_batch = max_batch
        self.batch_sizes: Counter[int] = Counter()  # engine calls made, by how many photos each answered
        self._waiting: queue.SimpleQueue[tuple[np.ndarray, Future]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="huskyai-engine", daemon=True).start()

    def predict(self, source: ImageInput, name: str | None = None) -> Prediction:
        """The model's answer for one photo; InvalidImageError (for this photo only) if it cannot be read."""
        x = self.model.preprocess(source, name)
        answer: Future = Future()
        self._waiting.put((x, answer))
        return answer.result()

    @property
    def batches(self) -> int:
        return sum(self.batch_sizes.values())

    @property
    def photos(self) -> int:
        return sum(size * n for size, n in self.batch_sizes.items())

    def _serve(self) -> None:
        while True:
            batch = [self._waiting.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._waiting.get_nowait())
                except queue.Empty:
                    break
            try:
                probabilities = self.model.probabilities(np.stack([x for x, _ in batch]))
            except Exception as err:  # noqa: BLE001  the engine failed: every waiting request learns why
                for _, answer in batch:
                    answer.set_exception(err)
                continue
            self.batch_sizes[len(batch)] += 1
            for (_, answer), probs in zip(batch, probabilities):
                answer.set_result(self.model.to_prediction(probs))


def shared_predict(model: Predictor, engine_batch: int) -> Callable[..., Prediction]:
    """The app's one prediction call, shared by the page and huskyai.serve.rest: through an EngineQueue of up to
    ``engine_batch`` photos a call, or the model's own ``predict`` when ``engine_batch`` is 0."""
    return EngineQueue(model, engine_batch).predict if engine_batch else model.predict
