"""Contact sheets: photos in a grid, each captioned with a few lines (evaluate's errors, the doctor's suspects)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from huskyai.images.decode import ImageInput

# one caption line: (prefix kept whole, text shortened from the left to fit, colour)
Line = tuple[str, str, str]


def _fit(draw, text: str, font, width: int) -> str:
    """``text`` shortened from the left (file names end in what matters) to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("..." + text, font=font) > width:
        text = text[1:]
    return "..." + text


def contact_sheet(tiles: list[tuple[ImageInput, list[Line]]], path: str | Path, title: str, thumb: int = 200,
                  cols: int = 6) -> Path:
    """A PNG of ``tiles`` (photo: a file or an image, caption lines) under ``title``; a photo that cannot be
    read any more keeps its caption under an empty frame."""
    from PIL import Image, ImageDraw, ImageFont

    from huskyai.errors import InvalidImageError
    from huskyai.images.decode import load_image

    try:
        font = ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        font = ImageFont.load_default()
    caption = 15 * max((len(lines) for _, lines in tiles), default=1) + 3
    rows = max(1, -(-len(tiles) // cols))
    sheet = Image.new("RGB", (cols * thumb, 26 + rows * (thumb + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 6), title, fill="black", font=font)
    for i, (photo, lines) in enumerate(tiles):
        x, y = (i % cols) * thumb, 26 + (i // cols) * (thumb + caption)
        try:
            img = load_image(photo)
            img.thumbnail((thumb - 6, thumb - 6))
            sheet.paste(img, (x + 3 + (thumb - 6 - img.width) // 2, y + 3 + (thumb - 6 - img.height) // 2))
        except (InvalidImageError, OSError):  # changed on disk since the scan
            draw.rectangle((x + 3, y + 3, x + thumb - 3, y + thumb - 3), outline="grey")
        for k, (prefix, text, colour) in enumerate(lines):
            room = thumb - 8 - int(draw.textlength(prefix, font=font))
            draw.text((x + 4, y + thumb + 15 * k), prefix + _fit(draw, text, font, room), fill=colour, font=font)
    path = Path(path)
    sheet.save(path)
    return path
