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
decoder's budget.

Both maps are relative (the photo's strongest husky evidence is 1, however little there is), so red alone
would read as "a husky here" even on a wolf the model calls "not a husky". The overlay's caption therefore
says, in letters that stay readable where the page shows the overlay 360 px high: what the method measured,
in one plain line; the verdict (as much as HUSKYAI_API_DETAIL lets tell, huskyai.inference.disclosure); and
what red means for that verdict (on "not a husky": only the most husky-like parts, too little for a husky);
and, when the photo was cropped, that the outlined square is what the model saw. :func:`caption` writes it,
for every detail level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from huskyai.extras import require
from huskyai.images.decode import ImageInput, load_image
from huskyai.inference import disclosure
from huskyai.inference.predictor import Prediction, Predictor
from huskyai.inference.preprocess import crop_box
from huskyai.settings import EXPLAIN_METHODS

METHODS = EXPLAIN_METHODS
METHOD_NAMES = {"grad-cam": "Grad-CAM", "occlusion": "occlusion"}
# what each method measured, in one plain line of the caption ({positive}: the positive class, e.g. husky)
METHOD_LINES = {
    "occlusion": "occlusion: grey squares hid parts of the photo; red where hiding them lowered P({positive}) most",
    "grad-cam": "Grad-CAM: red where the network's last features raised its {positive} score most",
}
MARGIN_DIM = 0.35  # brightness left to the margins the model never saw
HEAT_ALPHA = 0.6  # opacity of the hottest colour over the photo
# The overlay's longest side at most: the page shows it 360 px high, a contact sheet smaller; a photo's full
# size would cost memory and time in proportion to its pixels (a float per pixel and channel, several times).
DISPLAY_SIDE = 1024
# The caption's letters are sized for the page: the overlay is shown at most PAGE_HEIGHT high and PAGE_WIDTH
# wide (a half-width column; a phone is narrower still), and there its letters are CAPTION_PX high.
PAGE_HEIGHT, PAGE_WIDTH, CAPTION_PX = 360, 480, 12
MIN_FONT_PX = 8  # smaller than this is unreadable on any screen
MAX_BAND = 0.4  # the share of the overlay's height the caption may cover; past it, smaller letters, then fewer lines
CAPTION_RED = (255, 90, 60)  # the word "red" in the caption, in the heat's own colour (lighter, on the dark band)

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
    whole = (box[2] - box[0], box[3] - box[1]) == size
    text = caption(used, whole, prediction, model.positive, detail)
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


def caption(method: str, whole: bool, prediction: Prediction, positive: str, detail: str = "full") -> tuple[str, ...]:
    """The overlay's caption, as lines in reading order, the least needed first (a small overlay drops them
    from the front): that the outlined square is what the model saw (unless it saw the whole photo), what
    ``method`` measured, and the verdict with what red means for it, telling no more than ``detail`` allows."""
    name = positive.replace("_", " ")
    said = disclosure.verdict(prediction, positive, detail)  # "Husky, 97%", "Not a husky, about 90%", "Husky"
    if prediction.label == positive:
        meaning = f"red marks where it saw the most {name}"
    else:  # the map still shows husky evidence: say it was not enough, or red reads as "a husky here"
        meaning = f"red marks only its most {name}-like parts, too little for a {name}"
    lines = () if whole else ("outlined: the square the model saw; it never saw the dimmed parts",)
    return (*lines, METHOD_LINES[method].format(positive=positive), f"{said}: {meaning}")


def heat_colours(heatmap: np.ndarray) -> np.ndarray:
    """HxW in [0, 1] -> HxWx3 in [0, 255], blue-cyan-yellow-red (jet), without matplotlib."""
    h = heatmap[..., None] * 4.0
    rgb = 1.5 - np.abs(h - np.array([3.0, 2.0, 1.0], np.float32))
    return np.clip(rgb, 0.0, 1.0) * 255.0


def draw_overlay(photo: Image.Image, heatmap: np.ndarray, box: Box, text: str | tuple[str, ...]) -> Image.Image:
    """The overlay of ``heatmap`` (a map over the network's square input, as in Explanation) for a photo of
    any size whose ``box`` the model saw: the photo at display_size(), the map over that square, and the
    caption's lines (``text``, as :func:`caption` writes them). What ``explain`` draws."""
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


def caption_font_px(size: tuple[int, int]) -> int:
    """The caption's font size in the overlay's pixels: CAPTION_PX on the page, where an overlay of ``size`` is
    shrunk to fit PAGE_WIDTH x PAGE_HEIGHT."""
    w, h = size
    return max(MIN_FONT_PX, round(CAPTION_PX * max(h / PAGE_HEIGHT, w / PAGE_WIDTH)))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """``text`` as rows no wider than ``width``, broken between words (a word too long for a row is cut)."""
    rows: list[str] = []
    row = ""
    for word in text.split():
        candidate = f"{row} {word}" if row else word
        if row and draw.textlength(candidate, font=font) > width:
            rows.append(row)
            candidate = word
        while draw.textlength(candidate, font=font) > width and len(candidate) > 1:
            candidate = candidate[:-1]  # one word wider than the overlay: what fits of it
        row = candidate
    return rows + [row] if row else rows


def _layout(img: Image.Image, draw: ImageDraw.ImageDraw, lines: list[str]) -> tuple[object, int, list[str]]:
    """(font, row height, rows) of the caption: its readable size (caption_font_px), made smaller while it would
    cover more than MAX_BAND of the overlay, down to MIN_FONT_PX; then the first lines are left out, and at
    last the rows that do not fit."""
    limit = max(1, int(img.height * MAX_BAND))
    width = max(1, img.width - 8)
    font_px = caption_font_px(img.size)
    while True:
        font = ImageFont.load_default(size=font_px)
        row_px = round(font_px * 1.25)
        rows = [r for line in lines for r in _wrap(draw, line, font, width)]
        if len(rows) * row_px + 6 <= limit or font_px <= MIN_FONT_PX:
            break
        font_px -= 1
    while len(rows) * row_px + 6 > limit and len(lines) > 1:
        lines = lines[1:]
        rows = [r for line in lines for r in _wrap(draw, line, font, width)]
    return font, row_px, rows[: max(1, (limit - 6) // row_px)]


def _caption_band(img: Image.Image, draw: ImageDraw.ImageDraw, texts: str | tuple[str, ...]) -> None:
    """The caption's lines (see :func:`caption`) in white on a darkened band along the bottom, wrapped to the
    width, the word "red" in red."""
    lines = [texts] if isinstance(texts, str) else list(texts)
    font, row_px, rows = _layout(img, draw, lines)
    band = min(img.height, len(rows) * row_px + 6)
    strip = img.crop((0, img.height - band, img.width, img.height))
    img.paste(Image.eval(strip, lambda v: v // 4), (0, img.height - band))  # darkened, still see-through
    for i, row in enumerate(rows):
        x, y = 4, img.height - band + 3 + i * row_px
        for word in row.split(" "):
            colour = CAPTION_RED if word.rstrip(":,;") == "red" else "white"
            draw.text((x, y), word, fill=colour, font=font)
            x += draw.textlength(word + " ", font=font)
