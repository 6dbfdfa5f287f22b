"""How much an answer of the app reveals (HUSKYAI_API_DETAIL, read in huskyai.settings), one place for all of them.

- "full": the probabilities, as computed (the verdict "Husky, 97%");
- "rounded": every probability rounded to the nearest 0.1 ("Husky, about 100%"). Score-based query attacks
  (square patches, pixel probing) and a surrogate's soft labels feed on small changes of P; rounding hides
  every change that stays inside a 0.1 bucket, while a person still reads "about 90%" against "about 60%";
- "label": the label only ("Husky"), as a decision-based (label-only) attacker sees it anyway.

The label is always decided on the exact probability against the card's threshold; only what is shown is
coarsened. The same rule holds for gr.Label's confidences, the verdict line and the heatmap's caption
(huskyai.explain.explanation.caption, which says the verdict in these words).
"""

from __future__ import annotations

from huskyai.inference.predictor import Prediction

ROUND_STEP = 0.1


def rounded(p: float) -> float:
    """``p`` to the nearest multiple of ROUND_STEP (0.97 -> 1.0, 0.04 -> 0.0)."""
    return round(round(p / ROUND_STEP) * ROUND_STEP, 6)


def label_value(pred: Prediction, detail: str) -> dict[str, float] | str:
    """What gr.Label shows: every class's probability ("full", "rounded"), or the label alone ("label")."""
    if detail == "label":
        return pred.label
    if detail == "rounded":
        return {name: rounded(p) for name, p in pred.scores.items()}
    return dict(pred.scores)


def verdict(pred: Prediction, positive: str, detail: str = "full") -> str:
    """The answer in words: "Husky, 97%" (full), "Husky, about 100%" (rounded), "Husky" (label);
    for the other class "Not a husky, 88%" and so on."""
    is_pos = pred.label == positive
    title = positive.replace("_", " ").capitalize() if is_pos else f"Not a {positive.replace('_', ' ')}"
    confidence = pred.positive_probability if is_pos else 1 - pred.positive_probability
    if detail == "label":
        return title
    if detail == "rounded":
        return f"{title}, about {rounded(confidence):.0%}"
    return f"{title}, {confidence:.0%}"
