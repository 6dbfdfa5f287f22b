"""The "Mood" tab's components and its handler (the app places them inside ``gr.Tab("Mood")``).

Inputs: one box per diary column (numbers for numeric columns, dropdowns for categories), the day of the
week and yesterday's mood, all defaulting to the model's typical day. Outputs: the predicted mood, the
reasons (which columns pushed it up or down) and the importance plot from the verified export.
Privacy: a diary is personal, so the audit log gets a line saying a mood prediction was made (time,
client, model, latency) and never the day's values (``audited_mood``).
"""

from __future__ import annotations

import html
import io
import time
from collections.abc import Callable
from typing import Any

import gradio as gr  # the tab is built by the app, which has gradio; gr.Request must resolve here

from .diary import DiaryError
from .features import WEEKDAYS
from .model import MoodModel, MoodPrediction

SOURCE = "app:mood"
API_NAME = "predict_mood"


def input_names(model: MoodModel) -> list[str]:
    """The handler's inputs, in order: the diary's columns, then the day of the week and yesterday's mood."""
    return [*model.numeric, *model.categorical, "day_of_week", f"{model.target}_yesterday"]


def day_from_inputs(model: MoodModel, values: tuple[Any, ...]) -> dict[str, Any]:
    """The day as ``MoodModel.predict`` takes it; empty boxes are unknown (the training mean)."""
    day = dict(zip(input_names(model), values))
    return {k: v for k, v in day.items() if v is not None and v != ""}


def reasons_markdown(prediction: MoodPrediction, synthetic: bool, shown: int = 6) -> str:
    lines = [f"### Predicted mood: {prediction.mood:.2f} (about {prediction.score})"]
    if synthetic:
        lines.append("*This model was trained on a SYNTHETIC diary, not on anyone's real mood.*")
    lines.append("Compared with a typical day:")
    for reason in prediction.reasons[:shown]:
        if abs(reason["push"]) >= 0.005:
            way = "up" if reason["push"] > 0 else "down"
            lines.append(f"- **{html.escape(reason['feature'])}** pushed it {way} by {abs(reason['push']):.2f}")
    return "\n".join(lines)


def audited_mood(model: MoodModel, day: dict[str, Any], log=None, client: str = "local") -> MoodPrediction:
    """``model.predict(day)`` with one audit line that records THAT a mood prediction was made, never the
    values: ``data=None`` leaves every content field empty."""
    started = time.perf_counter()
    refused = None
    try:
        return model.predict(day)
    except DiaryError as err:
        refused = str(err)
        raise
    finally:
        if log is not None:
            log.record(source=SOURCE, client=client, data=None, model_sha256=model.model_sha256,
                       latency_ms=(time.perf_counter() - started) * 1000, trust=model.trust,
                       refused="invalid day" if refused else None)


def handler(model: MoodModel, boxes: list, log=None,
            client_of: Callable[[Any], str] | None = None) -> Callable[..., str]:
    """The event handler: {input box: value} (gradio's form for a set of inputs) in, the reasons' Markdown out;
    gr.Error for a bad value. ``boxes`` are the input boxes in ``input_names`` order."""

    # a set of inputs arrives as one dict, so the request can be a named parameter that gradio fills in (after
    # *values it never is; and gr must be importable from this module for gradio to resolve the annotation)
    def predict_mood(values: dict, request: gr.Request) -> str:
        client = client_of(request) if client_of and request is not None else "app"
        try:
            prediction = audited_mood(model, day_from_inputs(model, [values[b] for b in boxes]), log, client)
        except DiaryError as err:
            raise gr.Error(html.escape(str(err))) from None
        return reasons_markdown(prediction, model.synthetic)

    return predict_mood


def build_mood_tab(model: MoodModel, log=None, client_of: Callable[[Any], str] | None = None,
                   **listener: Any) -> None:
    """The tab's components inside the current Blocks or ``gr.Tab("Mood")``; ``listener`` goes to the
    button's click (e.g. ``concurrency_id``)."""
    from PIL import Image

    typical = model.card.get("typical_day", {})
    units = {c: (model.card.get("units") or {}).get(c) for c in model.numeric}
    inputs = []
    with gr.Row():
        with gr.Column():
            for name in model.numeric:
                label = f"{name} ({units[name]})" if units[name] else name
                inputs.append(gr.Number(value=typical.get(name), label=label))
            for name in model.categorical:
                levels = model.prep.categories.get(name, [])
                inputs.append(gr.Dropdown(levels, value=typical.get(name), label=name))
            inputs.append(gr.Dropdown(list(WEEKDAYS), value=None, label="day of week (empty: unknown)"))
            # a Number box left empty reads as 0, far outside the scale: a slider on the diary's own scale instead
            low, high = model.card.get("target_range") or (1.0, 5.0)
            inputs.append(gr.Slider(low, high, value=round((low + high) / 2), step=1,
                                    label=f"yesterday's {model.target} ({low:g} to {high:g})"))
        with gr.Column():
            button = gr.Button("Predict my mood", variant="primary")
            answer = gr.Markdown()
            picture = model.artifacts.get("importance.png")
            if picture:
                gr.Image(Image.open(io.BytesIO(picture)), label="What the model relies on (validation days)",
                         interactive=False)
    button.click(handler(model, inputs, log, client_of), inputs=set(inputs), outputs=answer, api_name=API_NAME,
                 **listener)
