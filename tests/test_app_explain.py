"""The app's heatmaps (/explain and its own rate limit) and HUSKYAI_API_DETAIL, through the real API of a running
app (gradio_client on loopback)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_HUSKIES, running_app, skimage_photo
from huskyai.errors import SettingsError
from huskyai.explain.explanation import METHOD_NAMES, display_size, draw_overlay, explain
from huskyai.images.decode import load_image
from huskyai.inference import disclosure
from huskyai.inference.predictor import Prediction
from huskyai.settings import Settings


def husky_photo(shipped) -> Path:
    """A real husky photo the shipped model calls a husky (the heatmap then has husky evidence to show)."""
    return next(p for p in sorted((SHARED_HUSKIES / "husky").glob("*.jpg"))
                if 0.9 < shipped.predict(p).positive_probability < 0.999)


def ask(server: dict, photo: Path, api_name: str):
    from gradio_client import Client, handle_file

    return Client(server["url"], verbose=False).predict(handle_file(str(photo)), api_name=api_name)


def audit_lines(server: dict) -> list[dict]:
    return [json.loads(line) for line in server["audit_log"].read_text().splitlines()]


def torch_loaded(server: dict) -> bool:
    """Whether the app's process has torch's library mapped (imported torch), from /proc."""
    return "libtorch" in Path(f"/proc/{server['proc'].pid}/maps").read_text()


@pytest.fixture(scope="module")
def full_app(tmp_path_factory):
    """The defaults (full detail, auto method), with a heatmap limit of 2 a minute to run into."""
    with running_app(tmp_path_factory.mktemp("explain"), HUSKYAI_RATE_LIMIT="1000",
                     HUSKYAI_EXPLAIN_RATE_LIMIT="2") as server:
        yield server


@pytest.mark.slow  # serves the app
def test_the_verdict_stays_torch_free_and_explain_answers_with_overlay_method_and_verdict(full_app, shipped):
    photo = husky_photo(shipped)
    label, verdict = ask(full_app, photo, "/predict")
    assert verdict == disclosure.verdict(shipped.predict(photo), "husky") and verdict.startswith("Husky, ")
    assert not torch_loaded(full_app)  # the plain verdict never imports torch
    overlay, method, said = ask(full_app, photo, "/explain")
    assert (method, said) == ("grad-cam", verdict)  # torch is installed here: auto takes Grad-CAM
    assert Image.open(overlay).size == display_size(load_image(photo).size)
    assert np.asarray(Image.open(overlay)).std() > 10  # a photo, not a blank
    entry = audit_lines(full_app)[-1]
    assert entry["source"] == "app-explain" and entry["label"] == "husky" and entry["refused"] is None


@pytest.mark.slow  # serves the app
def test_heatmaps_have_their_own_smaller_limit(full_app, shipped, tmp_path):
    from gradio_client.exceptions import AppError

    photo = tmp_path / "coffee.jpg"
    skimage_photo("coffee").save(photo)
    before = len(audit_lines(full_app))
    ask(full_app, photo, "/explain")  # the first test used one of the two
    with pytest.raises(AppError, match=r"Slow down: at most 2 heatmaps a minute from one address\. Try again in \d+ s"):
        ask(full_app, photo, "/explain")
    assert ask(full_app, photo, "/predict")[1].startswith("Not a husky")  # verdicts have a budget of their own
    new = audit_lines(full_app)[before:]
    assert [(e["source"], e["refused"]) for e in new] == [
        ("app-explain", None), ("app-explain", "rate limit (explanations)"), ("app", None)]


@pytest.mark.slow  # serves the app
@pytest.mark.parametrize("detail", ["rounded", "label"])
def test_api_detail_holds_for_every_answer(tmp_path, shipped, detail):
    photo = husky_photo(shipped)
    exact = shipped.predict(photo)
    with running_app(tmp_path, HUSKYAI_API_DETAIL=detail, HUSKYAI_EXPLAIN_METHOD="occlusion") as server:
        label, verdict = ask(server, photo, "/predict")
        overlay, method, said = ask(server, photo, "/explain")
    assert label["label"] == "husky" and said == verdict
    if detail == "label":
        assert not label.get("confidences") and verdict == "Husky"
    else:
        confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
        assert confidences == {k: round(round(v * 10) / 10, 6) for k, v in exact.scores.items()}
        assert re.fullmatch(r"Husky, about \d*0%", verdict)
    # the overlay is the heatmap under a caption that tells no more than the setting allows
    shown = explain(shipped, photo, method="occlusion")
    whole = (shown.overlay_box[2] - shown.overlay_box[0], shown.overlay_box[3] - shown.overlay_box[1]) == \
        shown.overlay.size
    told = draw_overlay(load_image(photo), shown.heatmap, shown.crop_box,
                        disclosure.caption(METHOD_NAMES[method], whole, exact, "husky", detail))
    got = np.asarray(Image.open(overlay).convert("RGB"), dtype=np.int16)
    assert np.abs(got - np.asarray(told, dtype=np.int16)).max() <= 2
    band = slice(-12, None)  # the caption: explain's own (with P to two decimals) is not what was sent
    assert np.abs(got[band] - np.asarray(shown.overlay, dtype=np.int16)[band]).max() > 50


@pytest.mark.slow  # serves the app
def test_full_detail_tells_the_probabilities(client, shipped):
    """The shared app runs with the default: the exact probabilities, "Husky, 97%"."""
    photo = husky_photo(shipped)
    label, verdict = ask({"url": client.src}, photo, "/predict")
    confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert confidences["husky"] == pytest.approx(shipped.predict(photo).positive_probability, abs=1e-6)
    assert re.fullmatch(r"Husky, \d+%", verdict)


def test_what_each_detail_level_tells():
    pred = Prediction("husky", 0.9712, {"husky": 0.9712, "not_husky": 0.0288})
    told = {d: (disclosure.label_value(pred, d), disclosure.verdict(pred, "husky", d))
            for d in ("full", "rounded", "label")}
    assert told == {"full": (pred.scores, "Husky, 97%"),
                    "rounded": ({"husky": 1.0, "not_husky": 0.0}, "Husky, about 100%"),
                    "label": ("husky", "Husky")}
    other = Prediction("not_husky", 0.34, {"husky": 0.34, "not_husky": 0.66})
    assert [disclosure.verdict(other, "husky", d) for d in ("full", "rounded", "label")] == [
        "Not a husky, 66%", "Not a husky, about 70%", "Not a husky"]
    assert "0.3" not in disclosure.caption("occlusion", True, other, "husky", "label")[0]


def test_explain_settings_are_read_from_the_environment(monkeypatch):
    for name in ("HUSKYAI_API_DETAIL", "HUSKYAI_EXPLAIN_RATE_LIMIT", "HUSKYAI_EXPLAIN_METHOD"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert (settings.api_detail, settings.explain_rate_limit, settings.explain_method) == ("full", 6, "auto")
    monkeypatch.setenv("HUSKYAI_API_DETAIL", "Label")
    monkeypatch.setenv("HUSKYAI_EXPLAIN_RATE_LIMIT", "0")
    assert (Settings.from_env().api_detail, Settings.from_env().explain_rate_limit) == ("label", 0)
    monkeypatch.setenv("HUSKYAI_API_DETAIL", "scores")
    with pytest.raises(SettingsError, match="HUSKYAI_API_DETAIL='scores': use one of full, rounded, label"):
        Settings.from_env()


@pytest.mark.slow  # an occlusion map: 7 s
def test_a_large_photos_overlay_is_sent_at_page_size(shipped, tmp_path):
    """The page shows the overlay 360 px high: a phone photo's overlay is drawn at most DISPLAY_SIDE long."""
    from huskyai.audit import AuditLog
    from huskyai.explain.explanation import DISPLAY_SIDE
    from huskyai.serve.explain_handler import explained
    from huskyai.serve.photo_input import Upload

    big = skimage_photo("coffee").resize((2400, 1800))
    path = tmp_path / "big.jpg"
    big.save(path, quality=90)
    settings = Settings(explain_method="occlusion")
    overlay, method, verdict = explained(shipped, Upload(path.read_bytes(), "big.jpg"), settings, "test",
                                         AuditLog(tmp_path / "audit.jsonl"))
    assert overlay.size == (DISPLAY_SIDE, DISPLAY_SIDE * 1800 // 2400) and method == "occlusion"
    assert verdict.startswith("Not a husky")
