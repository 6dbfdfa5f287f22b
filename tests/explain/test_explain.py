"""Explanations: the map over the network's input drawn on the crop of a display-size overlay, Grad-CAM and
occlusion on a model trained to look at one corner, the whole husky score behind the map, the torch-free path,
and the shortcut check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, bad_files, python_env, skimage_photo
from huskyai.errors import InvalidImageError
from huskyai.explain.explanation import (
    CAPTION_PX,
    DISPLAY_SIDE,
    MAX_BAND,
    MIN_FONT_PX,
    PAGE_HEIGHT,
    PAGE_WIDTH,
    caption,
    draw_overlay,
    explain,
)
from huskyai.inference.predictor import Prediction
from huskyai.inference.preprocess import crop_box

SHARED_WEB = ROOT.parent / "shared" / "data" / "huskies-web"
SIDE = 128  # the corner model's input; its last feature map is 4 x 4
MARGIN = 32  # test photos are SIDE + 2 * MARGIN wide: the crop cuts MARGIN off each side


def corner_photo(rng: np.random.Generator, husky: bool, width: int = SIDE) -> Image.Image:
    """Smooth random colours with a few rectangles anywhere but the top-left corner of the centre square;
    a husky carries a black-and-white checkerboard in that corner, the rest a plain square there (so
    "something in the corner" is not the signal)."""
    coarse = rng.integers(40, 216, (4, 4 * width // SIDE, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((width, SIDE), Image.BICUBIC)).copy()
    left = (width - SIDE) // 2
    for _ in range(3):
        x, y = rng.integers(left + SIDE // 2, width - 20), rng.integers(0, SIDE - 20)
        img[y:y + 20, x:x + 20] = rng.integers(0, 256, 3)
    corner = img[6:46, left + 6:left + 46]
    if husky:
        cells = (np.add.outer(np.arange(40) // 8, np.arange(40) // 8) % 2).astype(bool)
        corner[cells], corner[~cells] = 255, 0
    else:
        corner[:] = rng.integers(0, 256, 3)
    return Image.fromarray(img)


@pytest.fixture(scope="module")
def corner_model(tmp_path_factory):
    """The project's own training (head only) on 16 generated photos per class. Plain head: the zero-shot
    stage is fitted on out-of-fold head logits, and on 24 generated photos it learned to ignore the head
    (measured: stage weight -0.004 on it, fresh photos at P 0.5 either way)."""
    import huskyai
    from huskyai.training.run import train

    rng = np.random.default_rng(0)
    data = tmp_path_factory.mktemp("corner")
    for label in ("husky", "not_husky"):
        (data / label).mkdir()
        for i in range(16):
            corner_photo(rng, label == "husky").save(data / label / f"{i:02d}.png")
    out = tmp_path_factory.mktemp("corner_export")
    train(data, out, size=SIDE, valid_pct=0.25, zero_shot=False, report=lambda msg: None)
    return huskyai.load(out)


def corner_mass(heatmap: np.ndarray) -> float:
    """Share of the map (over the network's input) inside its top-left quarter (a quarter of what the model saw)."""
    return float(heatmap[:SIDE // 2, :SIDE // 2].sum() / heatmap.sum())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["grad-cam", "occlusion"])
def test_the_map_finds_the_corner_that_carries_the_class(corner_model, method):
    rng = np.random.default_rng(1)  # fresh photos, wider than tall: the crop must be mapped back
    for _ in range(3):
        photo = corner_photo(rng, husky=True, width=SIDE + 2 * MARGIN)
        e = explain(corner_model, photo, method=method)
        assert e.method == method and e.prediction.label == "husky"
        assert e.prediction == corner_model.predict(photo)
        assert e.crop_box == e.overlay_box == (MARGIN, 0, MARGIN + SIDE, SIDE)  # a small photo is shown as is
        assert e.heatmap.shape == (SIDE, SIDE) and e.heatmap.dtype == np.float32  # the network's input
        assert e.overlay.size == photo.size and e.overlay.mode == "RGB"
        assert 0 <= e.heatmap.min() and e.heatmap.max() <= 1 and e.heatmap.max() > 0.5
        assert corner_mass(e.heatmap) > 0.5, corner_mass(e.heatmap)  # a uniform map: 0.25
        shown, seen = np.asarray(e.overlay, dtype=np.float32), np.asarray(photo, dtype=np.float32)
        above = int(SIDE * (1 - MAX_BAND)) - 1  # above the caption, which may cover MAX_BAND of the height
        assert np.abs(shown[:above, :MARGIN - 2] - 0.35 * seen[:above, :MARGIN - 2]).max() <= 1  # margins: dimmed


def heat_drawn(overlay: Image.Image) -> np.ndarray:
    """Where an overlay of a plain grey photo differs from the photo (or its dimmed margins) by colour: the heat."""
    pixels = np.asarray(overlay, dtype=np.int16)[:-40]  # above the caption band
    return np.abs(pixels - pixels.mean(axis=2, keepdims=True)).max(axis=2) > 20


@pytest.mark.parametrize("size", [(300, 200), (3000, 2000), (2000, 3000)])
def test_the_map_is_drawn_on_the_crop_at_a_bounded_display_size(size):
    """A map hot in the top-left quarter of what the model saw lands on the top-left quarter of the crop box,
    scaled with the photo to at most DISPLAY_SIDE; the margins are dimmed, not heated."""
    small = np.zeros((96, 96), np.float32)
    small[:48, :48] = 1.0  # the top-left quarter of what the model saw
    photo = Image.new("RGB", size, "grey")
    box = crop_box(size, 96)
    overlay = draw_overlay(photo, small, box, "the model saw only the centre square")
    scale = min(1.0, DISPLAY_SIDE / max(size))
    assert overlay.size == (round(size[0] * scale), round(size[1] * scale)) and max(overlay.size) <= DISPLAY_SIDE
    left, top, right, bottom = (round(v * scale) for v in box)
    hot = heat_drawn(overlay)
    ys, xs = np.nonzero(hot)
    quarter = (right - left) // 2
    assert left <= xs.min() and xs.max() <= left + quarter * 1.15  # the blur spreads a little past the quarter
    assert top <= ys.min() and ys.max() <= top + quarter * 1.15
    edge = 2 + max(1, overlay.width // 250)  # inside the white outline
    assert hot[top + edge:top + quarter * 9 // 10, left + edge:left + quarter * 9 // 10].all()
    pixels = np.asarray(overlay, dtype=np.int16)
    margin = (left // 2, pixels.shape[0] // 2) if left else (pixels.shape[1] // 2, top // 2)
    inside = ((left + right) // 2, (top + bottom) * 3 // 4)
    assert pixels[margin[1], margin[0]].sum() < pixels[inside[1], inside[0]].sum()  # the margins are dimmed


def test_the_caption_says_what_the_method_measured_and_what_red_means_for_the_verdict():
    """Red is always the photo's most husky-like part (the map is relative): on a "not a husky" verdict the
    caption must say that it was too little, or red reads as "a husky here". Each detail level tells only
    what the verdict line tells."""
    husky = Prediction("husky", 0.9712, {"husky": 0.9712, "not_husky": 0.0288})
    wolf = Prediction("not_husky", 0.18, {"husky": 0.18, "not_husky": 0.82})
    lines = caption("occlusion", False, wolf, "husky")
    assert lines == ("outlined: the square the model saw; it never saw the dimmed parts",
                     "occlusion: grey squares hid parts of the photo; red where hiding them lowered P(husky) most",
                     "Not a husky, 82%: red marks only its most husky-like parts, too little for a husky")
    assert caption("grad-cam", True, husky, "husky") == (
        "Grad-CAM: red where the network's last features raised its husky score most",
        "Husky, 97%: red marks where it saw the most husky")
    assert caption("occlusion", True, wolf, "husky", "rounded")[-1].startswith("Not a husky, about 80%: ")
    told = " ".join(caption("occlusion", True, wolf, "husky", "label"))
    assert told.endswith("Not a husky: red marks only its most husky-like parts, too little for a husky")
    assert not any(c.isdigit() for c in told)


def caption_rows(overlay: Image.Image) -> list[int]:
    """Heights of the caption's rows of letters over a grey photo: runs of rows of the dark band (which darkens
    the white outline too) that hold white pixels."""
    pixels = np.asarray(overlay.convert("L"))
    lit = (pixels > 100).any(axis=1) & (np.median(pixels, axis=1) < 40)  # dimmed margins: 45
    runs, run = [], 0
    for row in lit:
        run = run + 1 if row else 0
        if run == 1:
            runs.append(0)
        if run:
            runs[-1] = run
    return runs


@pytest.mark.parametrize("size", [(500, 375), (3000, 2000), (768, 1024), (16384, 2300)])
def test_the_caption_is_readable_where_the_page_shows_the_overlay(size):
    """The page shows the overlay at most 360 px high in a column about 480 px wide: there the caption's letters
    are still about CAPTION_PX high (a font of 1/40 of the width, shrunk to fit one line, made them 5 px on a
    portrait photo), and the caption covers at most MAX_BAND of the overlay, the verdict always included."""
    wolf = Prediction("not_husky", 0.18, {"husky": 0.18, "not_husky": 0.82})
    photo = Image.new("RGB", size, (128, 128, 128))
    box = crop_box(size, 96)
    lines = caption("occlusion", False, wolf, "husky")
    overlay = draw_overlay(photo, np.zeros((96, 96), np.float32), box, lines)
    on_page = min(PAGE_HEIGHT / overlay.height, PAGE_WIDTH / overlay.width)
    rows = caption_rows(overlay)
    tallest = max(rows) * on_page  # a row with a capital and a descender: about the font's size
    banded = np.median(np.asarray(overlay.convert("L")), axis=1) < 40  # a quarter of the grey (dimmed: 45)
    band = int(banded[::-1].argmin())  # dark rows counted from the bottom
    assert band <= MAX_BAND * overlay.height + 1
    if overlay.height * on_page >= 0.75 * PAGE_HEIGHT:  # not a panorama shown a few dozen pixels high
        assert tallest >= 0.7 * CAPTION_PX, (rows, on_page)
        assert len(rows) >= 4  # every line fits, wrapped
    else:
        assert len(rows) >= 1 and tallest >= MIN_FONT_PX * 0.75 * on_page


def test_an_explanation_draws_its_own_caption(shipped):
    """A photo the model calls "not a husky": the overlay carries the caption for that verdict, drawn as
    draw_overlay draws it."""
    photo = skimage_photo("coffee")
    e = explain(shipped, photo, method="occlusion")
    assert e.prediction.label == "not_husky"
    whole = (e.crop_box[2] - e.crop_box[0], e.crop_box[3] - e.crop_box[1]) == photo.size
    drawn = draw_overlay(photo, e.heatmap, e.crop_box, caption("occlusion", whole, e.prediction, "husky"))
    assert np.abs(np.asarray(drawn, np.int16) - np.asarray(e.overlay, np.int16)).max() <= 2
    other = draw_overlay(photo, e.heatmap, e.crop_box, caption("occlusion", whole, e.prediction, "husky", "label"))
    assert np.abs(np.asarray(other, np.int16) - np.asarray(e.overlay, np.int16)).max() > 50  # the verdict differs


def test_a_refused_photo_raises_what_predict_raises(shipped):
    for name, data in bad_files().items():
        with pytest.raises(InvalidImageError) as refused:
            shipped.predict(data, name)
        with pytest.raises(InvalidImageError) as unexplained:
            explain(shipped, data, name, method="occlusion")
        assert str(unexplained.value) == str(refused.value)
    with pytest.raises(ValueError, match="unknown explanation method"):
        explain(shipped, skimage_photo("coffee"), method="lime")


def test_importing_the_explanations_imports_no_torch():
    code = ("import sys, huskyai.explain.explanation, huskyai.explain.gradcam, huskyai.explain.occlusion, "
            "huskyai.redteam.shortcut\nprint(sorted(m for m in ('torch', 'pytorch_grad_cam', 'cv2', 'timm') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=python_env(), timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


BLOCK_TORCH = """
import json, sys
class RefuseTorch:  # as on a serving install (a Space): no torch
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "pytorch_grad_cam"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, RefuseTorch())
"""


@pytest.mark.slow
def test_without_torch_auto_falls_back_to_occlusion_and_grad_cam_says_what_to_install(tmp_path):
    photo = tmp_path / "astronaut.jpg"
    skimage_photo("astronaut").resize((300, 200)).save(photo)
    code = BLOCK_TORCH + f"""
import huskyai
from huskyai.explain.explanation import explain
model = huskyai.load()
e = explain(model, {str(photo)!r})
try:
    explain(model, {str(photo)!r}, method="grad-cam")
    missing = None
except ImportError as err:
    missing = type(err).__name__ + ": " + str(err)
print(json.dumps([e.method, e.overlay.size, e.crop_box, e.prediction.label, missing]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=python_env(), timeout=600)
    assert out.returncode == 0, out.stderr
    method, size, box, label, missing = json.loads(out.stdout.splitlines()[-1])
    assert (method, size, box) == ("occlusion", [300, 200], [50, 0, 250, 200])
    assert missing.startswith("MissingExtraError: Grad-CAM heatmaps needs torch") and "huskyai[explain]" in missing


@pytest.mark.slow
def test_the_target_layer_is_the_map_the_pooling_reads():
    """Found by running the backbone, for both families: lite's bn2 (after conv_head), ResNet's layer4 (whose
    output is layer4[-1]'s, the same map)."""
    import timm

    from huskyai.explain.gradcam import target_layer

    for arch, name in (("tf_efficientnet_lite0", "bn2"), ("resnet18", "layer4")):
        backbone = timm.create_model(arch, pretrained=False, num_classes=1000).eval()
        found, module = target_layer(backbone)
        assert found == name and module is backbone.get_submodule(name)


def husky_photo() -> Path:
    photo = SHARED_WEB / "husky" / "w0001.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} not here")
    return photo


@pytest.mark.slow
def test_grad_cam_explains_the_whole_husky_score(shipped):
    """HuskyNet's husky logit z = (pooled-feature part) + (ImageNet log-probabilities and zero-shot part) + a
    constant. Both parts are computed from the target layer's map, both carry gradient there, and the map
    the explanation shows is the one of z itself, not of the pooled-feature half."""
    import torch

    from huskyai.explain.gradcam import grad_cam, gradcam_map

    cam = grad_cam(shipped)
    net, x = cam.net, shipped.preprocess(husky_photo())
    assert net.zero_shot
    n_pooled = net.backbone.num_features
    weight = (net.head.weight[1] - net.head.weight[0]) * net.stage2.weight[0, 0]  # the head's share of z
    seen = {}
    hooks = [net.head.register_forward_hook(lambda m, args, out: seen.__setitem__("head_input", args[0])),
             net.backbone.get_submodule(cam.layer_name).register_forward_hook(
                 lambda m, args, out: seen.__setitem__("map", out))]
    try:
        z = net(torch.from_numpy(x[None]).requires_grad_(True))[0, 1]
        pooled_part = (seen["head_input"][0, :n_pooled] * weight[:n_pooled]).sum()
        grad_z, grad_pooled = (torch.autograd.grad(v, seen["map"], retain_graph=True)[0] for v in (z, pooled_part))
        shown = gradcam_map(shipped, x)
        pooled_only = gradcam_map(shipped, x, target=lambda out: (seen["head_input"][0, :n_pooled]
                                                                   * weight[:n_pooled]).sum())
    finally:
        for hook in hooks:
            hook.remove()
    assert cam.target(net(torch.from_numpy(x[None]))[0]).item() == pytest.approx(z.item(), abs=1e-4)
    grad_rest = grad_z - grad_pooled  # the ImageNet and zero-shot part of z
    assert grad_pooled.norm() > 0.1 * grad_z.norm() and grad_rest.norm() > 0.1 * grad_z.norm()
    assert np.abs(shown - pooled_only).max() > 0.3  # leaving the ImageNet part out would show another map


@pytest.mark.slow
def test_shortcut_check_writes_its_table_and_picture(shipped, tmp_path):
    from huskyai.redteam.shortcut import shortcut_check

    if not (SHARED_WEB / "MANIFEST.tsv").is_file():
        pytest.skip("no huskies-web photos here")
    result = shortcut_check(shipped, SHARED_WEB, tmp_path, limit=2, method="occlusion")
    assert set(result["groups"]) == {"husky", "wolf"} and result["photos"] == 4 and result["method"] == "occlusion"
    for group in result["groups"].values():
        assert group["n"] == 2 and 0 <= group["p_animal_masked"] <= 1 and 0 <= group["p_background_masked"] <= 1
    assert json.loads((tmp_path / "shortcut.json").read_text())["rows"][0]["group"] == "husky"
    assert "| husky | 2 |" in (tmp_path / "shortcut.md").read_text()
    assert Image.open(tmp_path / "shortcut.png").size[0] > 0
