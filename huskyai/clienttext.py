"""Text a client sends (a file name, ``?name=``, a form value), made safe to repeat in a message or a log line.

Every door of the app (the page's upload, gradio's API, the lean route, the heatmap, the Mood tab) passes
the strings it takes from a client through :func:`client_text` once, where it receives them, so that no
message and no audit line ever carries more than a short, single line of the sender's words. The audit
log bounds every field again on its own (:func:`one_line`), as a last wall for text that is not a name.

What is removed: path parts (a name is its last component), control and format characters (newlines,
tabs, NUL, bidirectional overrides that make a name read backwards, zero-width characters, lone
surrogates, which cannot even be written as UTF-8). What is kept: everything else, cut to ``limit``
characters with a visible ellipsis so a reader knows the name was longer. HTML escaping is not done here:
that belongs to the place that renders the text.
"""

from __future__ import annotations

import re
import unicodedata

ELLIPSIS = "\u2026"
DEFAULT_LIMIT = 120  # characters: a long real file name fits, a flood of text does not
_DROPPED = {"Cc", "Cf", "Cs", "Zl", "Zp"}  # controls, format (bidi, zero width), surrogates, line separators
_SPACES = re.compile(r"\s+")
_READ_AHEAD = 2  # characters examined per character kept: room for names with some dropped characters


def one_line(value: object, limit: int) -> str:
    """``value`` as one line of at most ``limit`` characters: control and format characters dropped,
    whitespace runs made one space, and an ellipsis where the text was cut. Work is bounded by ``limit``,
    not by the length of ``value``."""
    if value is None:
        return ""
    text = value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)
    limit = max(1, limit)
    window = text[: limit * _READ_AHEAD + 1]
    if window.isprintable():  # the usual case, checked in C: nothing to drop (isprintable is False for them all)
        kept = window
    else:
        kept = "".join(" " if ch.isspace() else ch for ch in window
                       if ch.isspace() or unicodedata.category(ch) not in _DROPPED)
    kept = _SPACES.sub(" ", kept).strip()
    if len(kept) > limit or len(window) < len(text):
        return kept[: limit - 1].rstrip() + ELLIPSIS
    return kept


def client_text(value: object, limit: int = DEFAULT_LIMIT, default: str = "photo") -> str:
    """A name a client sent, bounded: its last path component as :func:`one_line` of at most ``limit``
    characters; ``default`` when nothing readable is left."""
    if value is None:
        return default
    text = value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)
    cut = max(text.rfind("/"), text.rfind("\\"))  # a browser on Windows may send C:\Users\...\photo.jpg
    if cut >= 0:
        text = text[cut + 1:]
    return one_line(text, limit) or default
