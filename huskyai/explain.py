"""Where the model looked: one prediction with a heatmap over the photo and an overlay to show.

Two ways to make the map, on the very network that answered:
- "grad-cam": Grad-CAM (the ``grad-cam`` package) on the torch network built from the verified
  weights, target the husky logit (huskyai.explain_gradcam); needs torch, i.e. ``huskyai[explain]``;
- "occlusion": grey patches slid over the input on the ONNX engine, the drop in P(husky) per pixel
  (huskyai.explain_occlusion); needs nothing beyond serving.
"auto" takes Grad-CAM where torch and grad-cam import, else occlusion. This module imports neither
torch nor grad-cam: serving stays torch-free until a Grad-CAM map is asked for.

The map is made on the network's input, the photo's largest centred square resized (huskyai.preprocess),
and mapped back with huskyai.preprocess.crop_box, the very square the prediction cropped, onto the photo
as decoded (EXIF-oriented; reduced by an integer factor only for photos whose shorter side is at least
twice huskyai.images' WORK_SIDE, or twice JPEG_DRAFT_SIDE for JPEGs, as for every prediction): zero
outside the square, whose margins the
overlay dims. Both maps are relative (the photo's strongest husky evidence is 1): the overlay's caption
gives P(husky), which says how much there is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .extras import require
from .images import ImageInput, load_image
from .predictor import Prediction, Predictor
from .preprocess import crop_box

METHODS = ("auto", "grad-cam", "occlusion")
METHOD_NAMES = {"grad-cam": "Grad-CAM", "occlusion": "occlusion"}
MARGIN_DIM = 0.35  # brightness left to the margins the model never saw
HEAT_ALPHA = 0.6  # opacity of the hottest colour over the photo


@dataclass(frozen=True)
class Explanation:
    prediction: Prediction  # what model.predict says for the same photo
    heatmap: np.ndarray  # float32 HxW in [0, 1] at the photo's size (as decoded); zero outside crop_box
    overlay: Image.Image  # the photo (RGB, same size) with the heatmap blended in and a caption
    method: str  # "grad-cam" or "occlusion": what made the map
    crop_box: tuple[int, int, int, int]  # (left, top, right, bottom) in the photo: the square the model saw

    def save(self, path: str | Path) -> Path:
        """Write the overlay (PNG, or any format Pillow knows from the suffix)."""
        self.overlay.save(path)
        return Path(path)


def explain(model: Predictor, source: ImageInput, name: str | None = None, method: str = "auto",
            detail: str = "full") -> Explanation:
    """Predict one photo (anything ``model.predict`` takes) and show where the model looked.

    ``method``: "auto", "grad-cam" or "occlusion" (see the module's docstring). ``detail``: what the
    overlay's caption may tell of the answer (huskyai.disclosure: "full", "rounded" or "label"). A photo the
    predictor refuses raises the same InvalidImageError; "grad-cam" without torch raises MissingExtraError."""
    if method not in METHODS:
        raise ValueError(f"unknown explanation method {method!r}: use one of {', '.join(METHODS)}")
    photo = load_image(source, name)
    x = model.preprocess(photo)
    prediction = model.to_prediction(model.probabilities(x[None])[0])  # what model.predict(photo) says
    small, used = None, "grad-cam"
    if method in ("auto", "grad-cam"):
        try:
            from .explain_gradcam import gradcam_map

            small = gradcam_map(model, x)
        except ImportError:
            if method == "grad-cam":
                require("explain", "Grad-CAM heatmaps")
                raise
    if small is None:
        from .explain_occlusion import occlusion_map

        small, used = occlusion_map(model, x), "occlusion"
    box = crop_box(photo.size, model.size)
    heatmap = to_photo(small, photo.size, box)
    if detail == "full":
        text = caption(used, box, photo.size, model, prediction)
    else:
        from . import disclosure

        whole = (box[2] - box[0], box[3] - box[1]) == photo.size
        text = disclosure.caption(METHOD_NAMES[used], whole, prediction, model.positive, detail)
    overlay = draw_overlay(photo, heatmap, box, text)
    return Explanation(prediction, heatmap, overlay, used, box)


def to_photo(small: np.ndarray, photo_size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """A map over the network's square input, resized onto ``box`` of the photo; zero elsewhere."""
    left, top, right, bottom = box
    square = Image.fromarray(np.asarray(small, dtype=np.float32)).resize((right - left, bottom - top),
                                                                          Image.BILINEAR)
    full = np.zeros((photo_size[1], photo_size[0]), np.float32)
    full[top:bottom, left:right] = np.asarray(square)
    return np.clip(full, 0.0, 1.0)


def caption(method: str, box: tuple[int, int, int, int], photo_size: tuple[int, int], model: Predictor,
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


def draw_overlay(photo: Image.Image, heatmap: np.ndarray, box: tuple[int, int, int, int],
                 text: str | tuple[str, ...]) -> Image.Image:
    """The photo with the heatmap blended in, the margins outside ``box`` dimmed and outlined, and a caption
    along the bottom: ``text``, or the first of several forms that fits the width."""
    left, top, right, bottom = box
    pixels = np.asarray(photo.convert("RGB"), dtype=np.float32)
    seen = np.zeros(heatmap.shape, bool)
    seen[top:bottom, left:right] = True
    pixels = np.where(seen[..., None], pixels, pixels * MARGIN_DIM)
    alpha = HEAT_ALPHA * heatmap[..., None]
    pixels = pixels * (1.0 - alpha) + heat_colours(heatmap) * alpha
    overlay = Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(overlay)
    if not seen.all():
        draw.rectangle((left, top, right - 1, bottom - 1), outline="white", width=max(1, photo.width // 250))
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
