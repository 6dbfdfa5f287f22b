"""The app's heatmaps (/explain and its own rate limit) and HUSKYAI_API_DETAIL, through the real API of a running
app (gradio_client on loopback): served in-process, and ``python app.py`` where the process itself is checked
(the verdict never imports torch)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve.helpers import audit_lines as read_audit
from serve.helpers import served

from conftest import SHARED_HUSKIES, running_app, skimage_photo
from huskyai.errors import SettingsError
from huskyai.explain.explanation import caption, display_size, draw_overlay, explain
from huskyai.images.decode import load_image
from huskyai.inference import disclosure
from huskyai.inference.predictor import Prediction
from huskyai.settings import Settings


def husky_photo(shipped) -> Path:
    """A real husky photo the shipped model calls a husky (the heatmap then has husky evidence to show)."""
    return next(p for p in sorted((SHARED_HUSKIES / "husky").glob("*.jpg"))
                if 0.9 < shipped.predict(p).positive_probability < 0.999)


def ask(server, photo: Path, api_name: str):
    from gradio_client import Client, handle_file

    return Client(server["url"], verbose=False).predict(handle_file(str(photo)), api_name=api_name)


def audit_lines(server) -> list[dict]:
    return read_audit(server["audit_log"])


def torch_loaded(server: dict) -> bool:
    """Whether the app's process has torch's library mapped (imported torch), from /proc."""
    return "libtorch" in Path(f"/proc/{server['proc'].pid}/maps").read_text()


@pytest.fixture(scope="module")
def full_app(tmp_path_factory):
    """``python app.py`` with the defaults (full detail, auto method): a process of its own, whose imports are
    checked."""
    with running_app(tmp_path_factory.mktemp("explain"), HUSKYAI_RATE_LIMIT="1000") as server:
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


@pytest.mark.slow  # an occlusion map
def test_heatmaps_have_their_own_smaller_limit_and_a_skip_is_no_error(shipped, tmp_path):
    """Over the heatmap limit /explain answers (no error: before, an error toast per photo stacked up over the
    verdict): no overlay, and the method's place says the heatmap was skipped."""
    photo = tmp_path / "coffee.jpg"
    skimage_photo("coffee").resize((300, 200)).save(photo)
    with served(shipped, tmp_path, rate_limit=1000, explain_rate_limit=1, explain_method="occlusion") as server:
        overlay, method, _ = ask(server, photo, "/explain")
        assert overlay and method == "occlusion"
        overlay, said, verdict = ask(server, photo, "/explain")
        assert overlay is None and said.startswith("Heatmap skipped: at most 1 heatmaps a minute from one address")
        assert ask(server, photo, "/predict")[1].startswith("Not a husky")  # verdicts have a budget of their own
        new = audit_lines(server)
    assert [(e["source"], e["refused"]) for e in new] == [
        ("app-explain", None), ("app-explain", "rate limit (explanations)"), ("app", None)]


@pytest.mark.slow  # two occlusion maps
@pytest.mark.parametrize("detail", ["rounded", "label"])
def test_api_detail_holds_for_every_answer(tmp_path, shipped, detail):
    photo = husky_photo(shipped)
    exact = shipped.predict(photo)
    with served(shipped, tmp_path, api_detail=detail, explain_method="occlusion") as server:
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
                        caption("occlusion", whole, exact, "husky", detail))
    got = np.asarray(Image.open(overlay).convert("RGB"), dtype=np.int16)
    assert np.abs(got - np.asarray(told, dtype=np.int16)).max() <= 2
    full = np.asarray(shown.overlay, dtype=np.int16)  # explain's own caption tells the full answer
    assert np.abs(got - full).max() > 50  # what was sent is not that


@pytest.mark.slow  # shares the app of the first test
def test_full_detail_tells_the_probabilities(full_app, shipped):
    """The app runs with the default: the exact probabilities, "Husky, 97%"."""
    photo = husky_photo(shipped)
    label, verdict = ask(full_app, photo, "/predict")
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
    assert not any("0.3" in line or "%" in line for line in caption("occlusion", True, other, "husky", "label"))


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
