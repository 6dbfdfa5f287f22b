"""Where the model looked: one prediction with a heatmap over the network's input and an overlay to show.

Two ways to make the map, on the very network that answered:
- "grad-cam": Grad-CAM (the ``grad-cam`` package) on the torch network built from the verified
  weights, target the husky logit (huskyai.explain.gradcam); needs torch, i.e. ``huskyai[explain]``;
- "occlusion": grey patches slid over the input on the ONNX engine, the drop in P(husky) per pixel
  (huskyai.explain.occlusion); needs nothing beyond serving.
"auto" takes Grad-CAM where torch and grad-cam import, else occlusion. This module imports neither
torch nor grad-cam: serving stays torch-free until a Grad-CAM map is asked for.

The map is made on the network's input, the photo's largest centred square resized (huskyai.inference.preprocess),
and stays at that size: ``Explanation.heatmap`` is input-size x input-size, whatever the photo's size.
The overlay is the photo (as decoded: EXIF-oriented, reduced by huskyai.images.decode as for every prediction)
shrunk so that its longest side is at most DISPLAY_SIDE, never enlarged; the map is resized onto the
same square as huskyai.inference.preprocess.crop_box, scaled to the overlay, and the margins the model never saw
are dimmed and outlined. So nothing derived from a photo is ever made at the photo's full size: a
heatmap costs the same small, fixed memory for a 16-megapixel panorama as for a thumbnail, within the
decoder's budget. Both maps are relative (the photo's strongest husky evidence is 1): the overlay's
caption gives P(husky), which says how much there is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from huskyai.extras import require
from huskyai.images.decode import ImageInput, load_image
from huskyai.inference.predictor import Prediction, Predictor
from huskyai.inference.preprocess import crop_box
from huskyai.settings import EXPLAIN_METHODS

METHODS = EXPLAIN_METHODS
METHOD_NAMES = {"grad-cam": "Grad-CAM", "occlusion": "occlusion"}
MARGIN_DIM = 0.35  # brightness left to the margins the model never saw
HEAT_ALPHA = 0.6  # opacity of the hottest colour over the photo
# The overlay's longest side at most: the page shows it 360 px high, a contact sheet smaller; a photo's full
# size would cost memory and time in proportion to its pixels (a float per pixel and channel, several times).
DISPLAY_SIDE = 1024

Box = tuple[int, int, int, int]  # (left, top, right, bottom) in pixels


@dataclass(frozen=True)
class Explanation:
    """One photo's answer and where the model looked: the map at the network's input size (the crop the model
    saw), the overlay at most DISPLAY_SIDE long, and where that crop lies in the photo and in the overlay."""

    prediction: Prediction  # what model.predict says for the same photo
    heatmap: np.ndarray  # float32 SxS in [0, 1] over the network's input (S = model.size): the crop_box square
    overlay: Image.Image  # RGB: the photo at display_size(), the heatmap blended over overlay_box, and a caption
    method: str  # "grad-cam" or "occlusion": what made the map
    crop_box: Box  # the square the model saw, in the photo as decoded
    overlay_box: Box  # the same square in the overlay's pixels: where the heatmap is drawn

    def save(self, path: str | Path) -> Path:
        """Write the overlay (PNG, or any format Pillow knows from the suffix)."""
        self.overlay.save(path)
        return Path(path)


def explain(model: Predictor, source: ImageInput, name: str | None = None, method: str = "auto",
            detail: str = "full") -> Explanation:
    """Predict one photo (anything ``model.predict`` takes) and show where the model looked.

    ``method``: "auto", "grad-cam" or "occlusion" (see the module's docstring). ``detail``: what the
    overlay's caption may tell of the answer (huskyai.inference.disclosure: "full", "rounded" or "label"). A photo the
    predictor refuses raises the same InvalidImageError; "grad-cam" without torch raises MissingExtraError."""
    if method not in METHODS:
        raise ValueError(f"unknown explanation method {method!r}: use one of {', '.join(METHODS)}")
    photo = load_image(source, name)
    x = model.preprocessing.array(photo)  # model.preprocess without a second load_image: no copy of the photo
    size, box = photo.size, crop_box(photo.size, model.size)
    shown = for_display(photo)
    del photo  # a large photo's pixels go before the map is made: the map's own memory comes on top of less
    prediction = model.to_prediction(model.probabilities(x[None])[0])  # what model.predict(photo) says
    small, used = None, "grad-cam"
    if method in ("auto", "grad-cam"):
        try:
            from huskyai.explain.gradcam import gradcam_map

            small = gradcam_map(model, x)
        except ImportError:
            if method == "grad-cam":
                require("explain", "Grad-CAM heatmaps")
                raise
    if small is None:
        from huskyai.explain.occlusion import occlusion_map

        small, used = occlusion_map(model, x), "occlusion"
    heatmap = np.clip(np.asarray(small, dtype=np.float32), 0.0, 1.0)
    if detail == "full":
        text = caption(used, box, size, model, prediction)
    else:
        from huskyai.inference import disclosure

        whole = (box[2] - box[0], box[3] - box[1]) == size
        text = disclosure.caption(METHOD_NAMES[used], whole, prediction, model.positive, detail)
    on_overlay = scale_box(box, size, shown.size)
    overlay = paint(shown, heatmap, on_overlay, text)
    return Explanation(prediction, heatmap, overlay, used, box, on_overlay)


def display_size(photo_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of a photo's overlay: the photo's, shrunk so its longest side is at most DISPLAY_SIDE."""
    w, h = photo_size
    scale = min(1.0, DISPLAY_SIDE / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def for_display(photo: Image.Image) -> Image.Image:
    """The photo in RGB at display_size(): antialiased (Lanczos after an integer box reduction), so no
    hidden image appears on the way down; the full-size pixels are never copied (a photo already small enough
    is returned as it is, and nothing here draws on it)."""
    size = display_size(photo.size)
    shown = photo if size == photo.size else photo.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return shown if shown.mode == "RGB" else shown.convert("RGB")


def scale_box(box: Box, photo_size: tuple[int, int], size: tuple[int, int]) -> Box:
    """``box`` in a photo of ``photo_size``, in the pixels of the same photo resized to ``size``; at least one
    pixel wide and high."""
    sx, sy = size[0] / photo_size[0], size[1] / photo_size[1]
    left, top = min(round(box[0] * sx), size[0] - 1), min(round(box[1] * sy), size[1] - 1)
    return left, top, max(left + 1, round(box[2] * sx)), max(top + 1, round(box[3] * sy))


def caption(method: str, box: Box, photo_size: tuple[int, int], model: Predictor,
            prediction: Prediction) -> tuple[str, str]:
    """One line: what part of the photo the model saw, what made the map, and the answer; then a shorter
    form of it, for small photos."""
    whole = (box[2] - box[0], box[3] - box[1]) == tuple(photo_size)
    seen = "the model saw the whole photo" if whole else "the model saw only the centre square"
    p = f"{prediction.positive_probability:.2f}"
    return (f"{seen} | {METHOD_NAMES[method]} map of {model.positive} evidence | "
            f"{prediction.label} (P({model.positive}) {p})",
            f"{'whole photo' if whole else 'centre square'} | {METHOD_NAMES[method]} | {prediction.label} {p}")


def heat_colours(heatmap: np.ndarray) -> np.ndarray:
    """HxW in [0, 1] -> HxWx3 in [0, 255], blue-cyan-yellow-red (jet), without matplotlib."""
    h = heatmap[..., None] * 4.0
    rgb = 1.5 - np.abs(h - np.array([3.0, 2.0, 1.0], np.float32))
    return np.clip(rgb, 0.0, 1.0) * 255.0


def draw_overlay(photo: Image.Image, heatmap: np.ndarray, box: Box, text: str | tuple[str, ...]) -> Image.Image:
    """The overlay of ``heatmap`` (a map over the network's square input, as in Explanation) for a photo of
    any size whose ``box`` the model saw: the photo at display_size(), the map over that square, and a
    caption (``text``, or the first of several forms that fits the width). What ``explain`` draws."""
    shown = for_display(photo)
    return paint(shown, heatmap, scale_box(box, photo.size, shown.size), text)


def paint(shown: Image.Image, heatmap: np.ndarray, box: Box, text: str | tuple[str, ...]) -> Image.Image:
    """``heatmap`` resized onto ``box`` of ``shown`` (RGB, already at display size) and blended in there,
    the margins outside ``box`` dimmed and outlined, and a caption along the bottom."""
    left, top, right, bottom = box
    square = Image.fromarray(np.asarray(heatmap, dtype=np.float32)).resize((right - left, bottom - top),
                                                                           Image.BILINEAR)
    heat = np.clip(np.asarray(square), 0.0, 1.0)
    pixels = np.asarray(shown, dtype=np.float32)  # a new array: at most DISPLAY_SIDE squared pixels
    alpha = HEAT_ALPHA * heat[..., None]
    seen = pixels[top:bottom, left:right] * (1.0 - alpha) + heat_colours(heat) * alpha
    pixels *= MARGIN_DIM
    pixels[top:bottom, left:right] = seen
    overlay = Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(overlay)
    if (right - left, bottom - top) != overlay.size:
        draw.rectangle((left, top, right - 1, bottom - 1), outline="white", width=max(1, overlay.width // 250))
    _caption_band(overlay, draw, text)
    return overlay


def _caption_band(img: Image.Image, draw: ImageDraw.ImageDraw, texts: str | tuple[str, ...]) -> None:
    """White text on a dark band along the bottom: the first form of ``texts`` that fits with a font of at
    least 8 px (shrunk from 1/40 of the width), else the last one, cut."""
    forms = [texts] if isinstance(texts, str) else list(texts)
    for text in forms:
        font_size = max(8, img.width // 40)
        while True:
            font = ImageFont.load_default(size=font_size)
            fits = draw.textlength(text, font=font) <= img.width - 8
            if fits or font_size <= 8:
                break
            font_size -= 1
        if fits:
            break
    band = min(img.height, font_size + 8)
    strip = img.crop((0, img.height - band, img.width, img.height))
    img.paste(Image.eval(strip, lambda v: v // 4), (0, img.height - band))  # darkened, still see-through
    draw.text((4, img.height - band + 3), text, fill="white", font=font)
