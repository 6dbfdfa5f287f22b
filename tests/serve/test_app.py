"""The app on a loopback port (served in-process, tests/serve/helpers.served): gradio_client calls, bad uploads,
odd images, upload hygiene; and ``python app.py`` itself where the entry point is what is tested."""

from __future__ import annotations

import io
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve.helpers import served

from conftest import ROOT, SHARED_HUSKIES, bad_files, jpeg_bytes, skimage_photo


@pytest.fixture(scope="module")
def app_server(shipped, tmp_path_factory):
    """Generous limits: these tests send many requests from one address."""
    with served(shipped, tmp_path_factory.mktemp("app"), rate_limit=100_000, explain_rate_limit=100_000) as server:
        yield server


@pytest.fixture(scope="module")
def client(app_server):
    from gradio_client import Client

    return Client(app_server["url"], verbose=False)


def call(client, path: Path):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), api_name="/predict")


@pytest.mark.slow  # serves the app
def test_api_answers_with_label_confidences_and_verdict(client, tmp_path, shipped):
    cat = tmp_path / "cat.jpg"
    cat.write_bytes(jpeg_bytes(skimage_photo("chelsea")))
    label, verdict = call(client, cat)
    assert label["label"] == "not_husky"
    confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert set(confidences) == {"husky", "not_husky"}
    assert abs(confidences["husky"] - shipped.predict(cat).positive_probability) < 1e-6
    assert verdict.startswith("Not a husky, ") and verdict.endswith("%")


@pytest.mark.skipif(not SHARED_HUSKIES.is_dir(), reason="needs ../shared/data/huskies")
@pytest.mark.slow  # serves the app
def test_api_recognises_a_husky(client, shipped):
    photo = next(p for p in sorted((SHARED_HUSKIES / "husky").glob("*.jpg"))
                 if shipped.predict(p).positive_probability > 0.9)
    label, verdict = call(client, photo)
    assert label["label"] == "husky" and verdict.startswith("Husky, ")


@pytest.mark.parametrize("name,message", [
    ("text.jpg", "not a supported image"),
    ("truncated.jpg", "truncated"),
    ("bomb.png", "megapixels"),
    ("empty.jpg", "empty"),
])
@pytest.mark.slow  # serves the app
def test_bad_uploads_get_a_clear_message_and_the_server_keeps_serving(client, tmp_path, name, message):
    from gradio_client.exceptions import AppError

    bad = tmp_path / name
    bad.write_bytes(bad_files()[name])
    with pytest.raises(AppError, match=message):
        call(client, bad)
    good = tmp_path / "coffee.jpg"
    good.write_bytes(jpeg_bytes(skimage_photo("coffee")))
    assert call(client, good)[0]["label"] == "not_husky"


@pytest.mark.slow  # serves the app
def test_upload_over_the_limit_is_refused(app_server, tmp_path):
    """Raw HTTP, as an attacker sends it: gradio_client refuses a big file on the caller's side, so through it
    this test passed whatever the server did."""
    import json

    from huskyai.redteam.client import CallRefused, client_from, raw_predict, upload

    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (2200, 2200, 3), dtype=np.uint8)).save(buf, "PNG")  # ~14.5 MB of noise
    big = buf.getvalue()
    assert len(big) > 10 * 1024 * 1024 + 64 * 1024
    base, audit = app_server["url"], app_server["audit_log"]
    before = len(audit.read_text().splitlines())
    with client_from("127.0.0.60") as c:
        # announced over the body cap: the middleware refuses it from the headers
        with pytest.raises(CallRefused) as refused:
            upload(base, big, "big.png", c, mime="image/png")
        assert refused.value.status == 413
        assert str(refused.value) == "The request is too large: a photo may be at most 10 MB."
        # one byte over 10 MB, inside the middleware's headroom for multipart headers: gradio's own cap
        with pytest.raises(CallRefused) as refused:
            upload(base, big[: 10 * 1024 * 1024 + 1], "big.png", c, mime="image/png")
        assert refused.value.status == 413
        assert str(refused.value) == "File size exceeded maximum allowed size of 10485760 bytes."
        # the same address is answered at once afterwards: the refusals cost it nothing
        cat = tmp_path / "cat.jpg"
        cat.write_bytes(jpeg_bytes(skimage_photo("chelsea")))
        assert raw_predict(base, cat, client=c)[0]["label"] == "not_husky"
    reasons = [json.loads(line)["refused"] or "" for line in audit.read_text().splitlines()[before:]]
    assert any(r.startswith("request body too large: ") and "bytes announced" in r for r in reasons)
    assert any(r.startswith("refused by gradio: HTTP 413") for r in reasons)
    assert not [p for p in Path(app_server["cache"]).glob("tmp*")]  # no partial upload left behind


def odd_images() -> dict[str, bytes]:
    cat = skimage_photo("chelsea")
    out = {}
    frames = [cat, cat.rotate(90), cat.rotate(180)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out["animated.gif"] = buf.getvalue()
    buf = io.BytesIO()
    rgba = cat.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(buf, "PNG")
    out["rgba.png"] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(np.asarray(cat.convert("L")).astype(np.uint16) * 257).save(buf, "PNG")
    out["grey16.png"] = buf.getvalue()
    buf = io.BytesIO()
    cat.convert("CMYK").save(buf, "JPEG")
    out["cmyk.jpg"] = buf.getvalue()
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated; the viewer must turn it back
    out["exif_rotated.jpg"] = jpeg_bytes(cat.rotate(-90, expand=True), exif=exif.tobytes())
    return out


@pytest.mark.slow  # serves the app
@pytest.mark.parametrize("name", sorted(odd_images()))
def test_odd_but_valid_images_get_the_right_answer(client, tmp_path, shipped, name):
    path = tmp_path / name
    path.write_bytes(odd_images()[name])
    label, _ = call(client, path)
    expected = shipped.predict(path.read_bytes())
    confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert abs(confidences["husky"] - expected.positive_probability) < 1e-6
    assert label["label"] == "not_husky"
    upright = shipped.predict(skimage_photo("chelsea")).positive_probability
    if name == "exif_rotated.jpg":  # turned upright, it is the same photo as the plain cat
        assert abs(expected.positive_probability - upright) < 0.05


@pytest.mark.slow  # serves the app
def test_no_partial_uploads_are_left_in_the_cache(app_server, client, tmp_path):
    photo = tmp_path / "private_photo.jpg"
    photo.write_bytes(jpeg_bytes(skimage_photo("astronaut")))
    call(client, photo)
    # answered uploads are swept on a timer (tests/test_audit_and_limits.py checks it with a short one)
    assert not [p for p in Path(app_server["cache"]).glob("tmp*")]


def card_text(model) -> str:
    from huskyai.serve.modelcard import model_card_markdown

    return model_card_markdown(model)


def test_model_card_says_what_the_model_was_trained_on(shipped):
    """Before: "Trained on: 861 not_husky, 99 husky photos", counting the 192 held-out photos it never saw."""
    training = shipped.card["training"]
    text = card_text(shipped)
    trained = ", ".join(f"{n} {c}" for c, n in training["counts"].items())
    assert f"**Trained on:** {trained} photos" in text
    if "holdout_counts" in training:
        held = ", ".join(f"{n} {c}" for c, n in training["holdout_counts"].items())
        assert f"**held out:** {held}, never trained on" in text
    assert shipped.model_sha256 in text and shipped.trust in text


def copy_export(tmp_path: Path) -> Path:
    import shutil

    from conftest import EXPORT

    export = tmp_path / "export"
    shutil.copytree(EXPORT, export)
    return export


REDTEAM = {"junk_false_positive_rate": 0.0, "clean_accuracy": 0.9, "pgd_accuracy": {"1/255": 0.1},
           "query_success_rate": 0.5, "query_median_queries": 20, "scaling_attack_defeated": True,
           "tamper_all_refused": True}


def test_an_unlisted_summary_beside_the_export_is_not_shown(tmp_path):
    """A report/summary.json beside the export (or a redteam.json the card does not list) is unsigned:
    it used to be rendered, so it could say "certified safe", with a link."""
    import json

    import huskyai

    export = copy_export(tmp_path)
    model = huskyai.load(export)
    forged = REDTEAM | {"model_sha256": model.model_sha256, "scaling_attack_defeated": "certified safe",
                        "note": "[certified safe](https://example.com)"}
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "summary.json").write_text(json.dumps(forged))
    (export / "redteam.json").write_text(json.dumps(REDTEAM))  # beside the weights, but not in the card
    text = card_text(model)
    assert "Red-team" not in text and "certified" not in text and "example.com" not in text


def test_a_redteam_report_listed_in_the_card_is_shown_as_numbers_only(tmp_path):
    import hashlib
    import json

    import huskyai

    export = copy_export(tmp_path)
    report = json.dumps(REDTEAM | {"note": "<a href=https://example.com>certified safe</a>"}).encode()
    (export / "redteam.json").write_bytes(report)
    card = json.loads((export / "model.json").read_text())
    card["files"]["redteam.json"] = hashlib.sha256(report).hexdigest()
    (export / "model.json").write_text(json.dumps(card, indent=2))
    model = huskyai.load(export, trust_unsigned=True)  # a card edited by hand is no longer the pinned one
    text = card_text(model)
    assert "Red-team report" in text and "1/255: 0.10" in text and "scaling attack defeated: yes" in text
    assert "certified" not in text and "example.com" not in text
    assert "UNSIGNED" in text or "unsigned" in text.lower()  # the card says how little it was verified


def test_the_confusion_matrix_shown_is_the_verified_one(tmp_path):
    """The plot comes from the bytes the card's hash vouches for: a file swapped after loading is not shown."""
    import io

    import numpy as np
    from PIL import Image

    import huskyai
    from huskyai.serve.context import ServeContext
    from huskyai.serve.page import build_demo

    export = copy_export(tmp_path)
    original = np.asarray(Image.open(export / "confusion_matrix.png").convert("RGB"))
    model = huskyai.load(export)
    Image.new("RGB", (64, 64), "red").save(export / "confusion_matrix.png")  # swapped after the load
    demo = build_demo(ServeContext(model))
    shown = [b for b in demo.blocks.values() if getattr(b, "label", None) == "Validation confusion matrix"]
    assert shown  # the card lists the plot and its bytes were verified at load: it is shown
    for block in shown:  # shown only if it is the verified image
        path = block.value["path"] if isinstance(block.value, dict) else block.value.path
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(Path(path).read_bytes())).convert("RGB")), original)


@pytest.mark.slow  # serves the app
def test_no_monitoring_or_flagging_endpoints(app_server):
    for path in ("monitoring", "gradio_api/monitoring"):
        try:
            with urllib.request.urlopen(app_server["url"] + path, timeout=5) as r:
                assert r.status != 200 or b"monitoring" not in r.read().lower()
        except urllib.error.HTTPError as err:
            assert err.code in (401, 403, 404)
    with urllib.request.urlopen(app_server["url"] + "gradio_api/info", timeout=5) as r:
        assert b"flag" not in r.read().lower()
    with urllib.request.urlopen(app_server["url"] + "config", timeout=5) as r:
        assert b"flag" not in r.read().lower()


def test_spaces_front_matter_matches_what_is_installed():
    import gradio

    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n")
    front = dict(line.split(": ", 1) for line in text.split("---\n")[1].strip().splitlines())
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py"
    assert front["sdk_version"] == gradio.__version__
    for key in ("title", "emoji", "license"):
        assert front.get(key)
    requirements = (ROOT / "requirements.txt").read_text()
    assert f"gradio=={gradio.__version__}" in requirements
    assert os.path.isfile(ROOT / front["app_file"])


@pytest.mark.slow  # python app.py as a user runs it: the entry point's exit code and stderr
def test_app_refuses_a_missing_or_tampered_model_with_one_line(tmp_path):
    import subprocess
    import sys

    from conftest import python_env

    proc = subprocess.run([sys.executable, "app.py"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=python_env() | {"HUSKYAI_MODEL": str(tmp_path), "HUSKYAI_AUDIT_LOG": "off"})
    assert proc.returncode == 1
    assert "cannot serve the model" in proc.stderr and "model.json" in proc.stderr
    assert "Traceback" not in proc.stderr
