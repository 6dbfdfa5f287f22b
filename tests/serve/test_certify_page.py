"""The page's certified answer: an opt-in checkbox "Certify (slower: ~N s)" only where the server holds a
noise-trained model, its handler's words (the certificate's describe(), or why there is none), the shared
certification budget, and in a browser: nothing is asked of the server unless the box is ticked, and a new photo
never shows the previous photo's certificate."""

from __future__ import annotations

import os

import gradio as gr
import pytest
from certify_helpers import noise_trained_export, photo
from gradio.data_classes import FileData
from serve.helpers import audit_lines, served, wait_until

from huskyai.api import load
from huskyai.audit import AuditLog
from huskyai.serve.context import ServeContext
from huskyai.serve.handlers import CERTIFY_SOURCE, certifier
from huskyai.serve.page import build_demo
from huskyai.serve.startup import BackgroundModel
from huskyai.settings import Settings

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def robust_export(tmp_path_factory, toy_data):
    return noise_trained_export(tmp_path_factory, toy_data)


def photo_file(tmp_path, name: str = "coffee") -> FileData:
    path = tmp_path / f"{name}.jpg"
    path.write_bytes(photo(name))
    return FileData(path=str(path), orig_name=path.name)  # as gradio hands the photo box's payload over


def certify_boxes(demo: gr.Blocks) -> list[gr.Checkbox]:
    return [b for b in demo.blocks.values() if isinstance(b, gr.Checkbox) and str(b.label).startswith("Certify")]


def test_the_opt_in_is_offered_only_with_a_noise_trained_model_and_says_how_slow(shipped, tmp_path):
    plain = ServeContext(shipped, Settings(), AuditLog(tmp_path / "audit.jsonl"))
    assert certify_boxes(build_demo(plain)) == []
    # any loaded model stands in here: the page only asks whether there is one, and how long a sample took
    ready = ServeContext(shipped, Settings(certify_n=1000), AuditLog(tmp_path / "audit.jsonl"),
                         robust=BackgroundModel.ready(shipped, seconds_per_sample=0.012))
    demo = build_demo(ready)
    (box,) = certify_boxes(demo)
    assert box.label == "Certify (slower: ~13 s)" and box.value is False  # 1,100 samples of 12 ms
    hidden = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "certify-trigger"]
    assert len(hidden) == 1 and hidden[0].visible == "hidden"


@pytest.mark.slow  # trains the noise-trained export (about 25 s, once per run)
def test_the_handler_says_the_certificate_or_why_there_is_none(shipped, robust_export, tmp_path):
    log = tmp_path / "audit.jsonl"
    ctx = ServeContext(shipped, Settings(certify_n=50, certify_rate_limit=1), AuditLog(log),
                       robust=BackgroundModel.ready(load(robust_export)))
    certify_photo = certifier(ctx)
    said = certify_photo(photo_file(tmp_path), None)
    assert said.startswith(("Husky, certified", "Not a husky, certified", "No certified answer"))
    assert "from 50 noisy copies" in said or "(50 noisy copies)" in said
    skipped = certify_photo(photo_file(tmp_path), None)
    assert skipped.startswith("Certified answer skipped: at most 1 certified answers a minute from one address "
                              "(each costs about 150 predictions); the verdict above is complete.")
    none = certifier(ServeContext(shipped, Settings(), AuditLog(log)))(photo_file(tmp_path), None)
    assert none.startswith("This server gives no certified answers")
    with pytest.raises(gr.Error, match="Drop a photo"):
        certify_photo(None, None)
    assert [(x["source"], x["refused"]) for x in audit_lines(log)] == [
        (CERTIFY_SOURCE, None), (CERTIFY_SOURCE, "rate limit (certified answers)"),
        (CERTIFY_SOURCE, "no certified answers: " + none)]


@pytest.mark.slow  # trains, serves the app and drives the browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (tests/run.sh installs it)")
def test_in_the_browser_a_certificate_is_asked_for_only_when_ticked_and_belongs_to_the_photo(
        shipped, robust_export, tmp_path):
    from playwright.sync_api import sync_playwright

    cat, cup = tmp_path / "chelsea.jpg", tmp_path / "coffee.jpg"
    cat.write_bytes(photo("chelsea"))
    cup.write_bytes(photo("coffee"))
    file_input = '[data-testid="image"] input[type="file"]'
    with served(shipped, tmp_path, robust_model=str(robust_export), certify_n=2000, certify_rate_limit=100,
                explain_method="occlusion") as server, sync_playwright() as p:
        assert server.ctx.robust.get(timeout=60) is not None
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(server.url)
        page.wait_for_selector(file_input, state="attached", timeout=60_000)
        certificate = page.locator("#certificate")

        def sources() -> list[str]:
            return [x["source"] for x in server.audit()]

        page.set_input_files(file_input, str(cat))  # not ticked: a verdict and a heatmap, and nothing more
        assert wait_until(lambda: sources() == ["app", "app-explain"], timeout=60)
        page.wait_for_timeout(1000)
        assert sources() == ["app", "app-explain"] and certificate.inner_text().strip() == ""
        page.locator("#certify input[type=checkbox]").check()  # ticked: the photo in the box is certified
        certificate.get_by_text("certified").wait_for(timeout=60_000)
        assert sources()[2:] == [CERTIFY_SOURCE]
        page.set_input_files(file_input, str(cup))  # a new photo: verdict, heatmap, then its certificate
        assert wait_until(lambda: sources()[-1:] == [CERTIFY_SOURCE] and len(sources()) >= 6, timeout=90)
        page.wait_for_timeout(1000)
        lines = server.audit()
        assert [x["source"] for x in lines[3:]] == ["app", "app-explain", CERTIFY_SOURCE]
        assert lines[-1]["image_sha256"] == lines[3]["image_sha256"]  # the certificate is the cup's
        said = certificate.inner_text()
        assert said.startswith(("Husky, certified", "Not a husky, certified", "No certified answer"))
        expected = "Not a husky" if lines[-1]["label"] == "not_husky" else \
            ("Husky" if lines[-1]["label"] == "husky" else "No certified answer")
        assert said.startswith(expected)
        browser.close()
