"""The app's engine queue: concurrent predictions share engine calls, and a bad photo fails only itself."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import bad_files, jpeg_bytes, skimage_photo


@pytest.fixture(scope="module")
def model():
    import huskyai

    return huskyai.load()


def test_concurrent_answers_equal_the_models_own(model):
    from huskyai.inference.batching import EngineQueue

    rng = np.random.default_rng(0)
    photos = [jpeg_bytes(skimage_photo(n)) for n in ("chelsea", "coffee", "astronaut", "rocket")]
    photos += [rng.integers(0, 256, (120 + 7 * i, 200, 3), dtype=np.uint8) for i in range(12)]
    queue = EngineQueue(model, max_batch=4)
    start = threading.Barrier(len(photos))

    def ask(photo):
        start.wait()  # all at once, so that requests wait together and share engine calls
        return queue.predict(photo)

    with ThreadPoolExecutor(len(photos)) as pool:
        answers = list(pool.map(ask, photos))
    for photo, answer in zip(photos, answers):
        alone = model.predict(photo)
        assert answer.label == alone.label
        assert abs(answer.positive_probability - alone.positive_probability) < 1e-5
    assert queue.photos == len(photos)
    assert queue.batches < len(photos)  # some engine calls answered several requests
    assert max(queue.batch_sizes) <= 4


def test_a_bad_photo_fails_alone_and_the_queue_keeps_serving(model):
    from huskyai import InvalidImageError
    from huskyai.inference.batching import EngineQueue

    queue = EngineQueue(model, max_batch=8)
    good = jpeg_bytes(skimage_photo("coffee"))
    requests = [(name, data) for name, data in bad_files().items()] + [("coffee.jpg", good)] * 6
    start = threading.Barrier(len(requests))

    def ask(request):
        name, data = request
        start.wait()
        try:
            return queue.predict(data, name=name).label
        except InvalidImageError as err:
            return f"refused: {err}"

    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(ask, requests))
    for (name, _), answer in zip(requests, answers):
        if name == "coffee.jpg":
            assert answer == "not_husky"
        else:
            assert answer.startswith(f"refused: {name}")
    assert queue.predict(good).label == "not_husky"


def test_the_queue_refuses_a_batch_of_zero(model):
    from huskyai.inference.batching import EngineQueue

    with pytest.raises(ValueError):
        EngineQueue(model, max_batch=0)


def test_the_apps_one_prediction_call_is_the_queue_only_when_it_is_on(model):
    from huskyai.inference.batching import EngineQueue, shared_predict

    assert shared_predict(model, 0) == model.predict
    queued = shared_predict(model, 4)
    assert isinstance(queued.__self__, EngineQueue) and queued.__self__.max_batch == 4
    photo = jpeg_bytes(skimage_photo("chelsea"))
    assert queued(photo, name="chelsea.jpg") == model.predict(photo)


def test_engine_threads_are_a_setting(monkeypatch):
    from huskyai.errors import SettingsError
    from huskyai.settings import Settings

    monkeypatch.delenv("HUSKYAI_ENGINE_THREADS", raising=False)
    assert Settings.from_env().engine_threads == 0  # ONNX Runtime's own choice
    monkeypatch.setenv("HUSKYAI_ENGINE_THREADS", "1")
    assert Settings.from_env().engine_threads == 1
    monkeypatch.setenv("HUSKYAI_ENGINE_THREADS", "one")
    with pytest.raises(SettingsError, match="HUSKYAI_ENGINE_THREADS='one' is not a whole number"):
        Settings.from_env()


@pytest.mark.parametrize("detail", ["full", "rounded", "label"])
def test_the_lean_routes_answer_tells_what_the_setting_allows(model, detail):
    from huskyai.inference.disclosure import rounded
    from huskyai.serve.rest import answer

    pred = model.predict(jpeg_bytes(skimage_photo("chelsea")))
    told = answer(pred, model.positive, detail)
    assert told["label"] == pred.label
    if detail == "label":
        assert told == {"label": pred.label, "verdict": "Not a husky"}
    else:
        assert told["scores"] == (pred.scores if detail == "full" else {c: rounded(p) for c, p in pred.scores.items()})
