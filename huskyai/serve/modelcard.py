"""The model card as the page shows it: Markdown built from the verified card, never from loose files.

Every value taken from the card is HTML-escaped (gradio renders Markdown as HTML). Extra files (the
red-team summary, the confusion matrix) are shown only when the card lists them and their sha256
matches; of the red-team summary only numbers and yes/no values reach the page.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import math
import re
from pathlib import Path

from PIL import Image

from huskyai.audit import model_trust
from huskyai.inference.predictor import Predictor


def model_card_markdown(model: Predictor) -> str:
    """The card for the page: architecture, training data, metrics, red-team numbers, model hash and trust."""
    card = model.card
    lines = [
        f"**Architecture:** `{_text(card['arch'])}` ({int(card['input_size'])} px), "
        "ImageNet-pretrained, with a husky head.",
        *training_lines(card.get("training", {})),
    ]
    metrics = dict(card.get("metrics", {}))
    cv = metrics.pop("cv", None)
    for split, m in metrics.items():
        lines.append(f"**{_text(split.capitalize())}** ({int(m['n'])} photos): accuracy {m['accuracy']:.3f}, "
                     f"precision {m['precision']:.3f}, recall {m['recall']:.3f}, F1 {m['f1']:.3f}.")
    if isinstance(cv, dict):
        lines += cv_lines(cv)
    lines += redteam_lines(model)
    lines += graph_lines(card.get("graphs"), getattr(model, "precision", "fp32"))
    lines.append(f"**Model sha256:** `{_text(model.model_sha256)}`")
    lines.append(f"**Verified:** {_text(model_trust(model))}.")
    lines.append(f"**Created:** {_text(card.get('created', '?'))}.")
    return "\n\n".join(lines)


def training_lines(training: dict) -> list[str]:
    """What the model was trained on, as the card says: the holdout is never counted as training."""
    trained = _counts(training.get("counts"))
    validated = _counts(training.get("validation_counts"))
    held = _counts(training.get("holdout_counts"))
    fingerprint = _text(str(training.get("data_fingerprint", "?"))[:16])
    if trained is None:
        return []
    line = f"**Trained on:** {trained} photos"
    if validated:
        line += f"; validated on {validated}"
    if held:
        line += f"; **held out:** {held}, never trained on"
    elif training.get("holdout_files"):  # older cards counted the held-out photos in
        line = (f"**Photos:** {trained}, of which {len(training['holdout_files'])} were held out "
                "and never trained on")
    return [line + f" (data fingerprint `{fingerprint}`)."]


def graph_lines(graphs, precision: str) -> list[str]:
    """Which of the export's graphs serves, when it has more than one (an INT8 graph: huskyai.training.quantize)."""
    if not isinstance(graphs, dict) or len(graphs) < 2:
        return []
    line = f"**Serving graph:** {_text(precision)} of " + ", ".join(_text(g.get("precision", "?")) for g in
                                                                   graphs.values() if isinstance(g, dict))
    calibration = next((g.get("calibration") for g in graphs.values()
                        if isinstance(g, dict) and isinstance(g.get("calibration"), dict)), None)
    if calibration and isinstance(calibration.get("photos"), int):
        line += (f"; INT8 calibrated on {calibration['photos']} training photos "
                 f"(fingerprint `{_text(str(calibration.get('fingerprint', '?'))[:16])}`)")
    return [line + "."]


def cv_lines(cv: dict) -> list[str]:
    """Repeated cross-validation from the card, with its 95% intervals, one line per source."""
    out = []
    for part, m in cv.items():
        if not isinstance(m, dict):
            continue
        try:
            cells = ", ".join(f"{k} {_number(m[k]['mean']):.3f} [{_number(m[k]['ci95'][0]):.3f}, "
                              f"{_number(m[k]['ci95'][1]):.3f}]" for k in ("accuracy", "precision", "recall", "f1"))
            out.append(f"**Cross-validation, {_text(part)}** ({int(_number(m['n']))} photos, "
                       f"{int(_number(cv.get('repeats', 1)))} x 5 folds, 95% intervals): {cells}.")
        except (KeyError, TypeError, IndexError):
            continue
    return out


def redteam_lines(model: Predictor) -> list[str]:
    """Headline numbers of the red-team report, only when the model card lists it (redteam.json) and
    its hash matched: a report lying beside the export proves nothing and is never shown. Only numbers
    and yes/no values are rendered, so no text from the file reaches the page."""
    data = artifact(model, "redteam.json")
    if data is None:
        return []
    try:
        s = json.loads(data)
        weights = model.card.get("files", {}).get("model.safetensors")
        if "weights_sha256" in s and s["weights_sha256"] != weights:
            return []  # listed, but made for other weights
        pgd = ", ".join(f"{k}: {_number(v):.2f}" for k, v in s["pgd_accuracy"].items()
                        if re.fullmatch(r"\d{1,3}/\d{1,3}", str(k)))
        return [f"**Red-team report** (listed in the model card, hash checked): junk images called "
                f"{_text(model.positive)} {_number(s['junk_false_positive_rate']):.1%}; accuracy clean "
                f"{_number(s['clean_accuracy']):.2f}, under PGD {pgd or 'not measured'}; black-box attack success "
                f"{_number(s['query_success_rate']):.0%} (median {_number(s['query_median_queries']):.0f} queries); "
                f"scaling attack defeated: {'yes' if _flag(s['scaling_attack_defeated']) else 'no'}; "
                f"tampered files refused: {'yes' if _flag(s['tamper_all_refused']) else 'no'}."]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


def confusion_matrix(model: Predictor) -> Image.Image | None:
    """The validation confusion matrix from the bytes the card's hash vouches for (PNG only), or None."""
    data = artifact(model, "confusion_matrix.png")
    if data is None:
        return None
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG"])
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return image


def artifact(model: Predictor, name: str) -> bytes | None:
    """The verified bytes of an extra export file the model card lists, or None.

    ``Predictor.artifact`` where the predictor has it; otherwise the file is read once here and
    its sha256 compared with the card's (an unlisted or mismatching file gives None)."""
    if hasattr(model, "artifact"):
        return model.artifact(name)
    expected = model.card.get("files", {}).get(name)
    if not isinstance(expected, str):
        return None
    try:
        data = (Path(model.export_dir) / name).read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == expected else None


def _text(value) -> str:
    """Card text for Markdown, with HTML markup neutralised (quotes may stay: this is not an attribute)."""
    return html.escape(str(value), quote=False)


def _counts(counts) -> str | None:
    """'551 not_husky, 63 husky' from a card's counts; None unless every count is a whole number."""
    if not isinstance(counts, dict) or not counts:
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts.values()):
        return None
    return ", ".join(f"{n} {_text(c)}" for c, n in counts.items())


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError("not a number")
    return float(value)


def _flag(value) -> bool:
    if not isinstance(value, bool):
        raise TypeError("not a yes/no")
    return value
