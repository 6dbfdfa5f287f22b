"""The "Mood" tab's components and its handler (the app places them inside ``gr.Tab("Mood")``).

Inputs: one box per diary column (numbers for numeric columns, dropdowns for categories), the day of the
week and yesterday's mood, all defaulting to the model's typical day. Outputs: the predicted mood, the
reasons (which columns pushed it up or down) and the importance plot from the verified export.

Every value is checked by the handler before the model runs (huskyai.mood.features.check_days: the
diary schema's ranges; a dropdown's value must be one of its choices): a value no day can have (-30 hours
of sleep, 1e300, infinity, NaN, text) is refused in one line naming the field and its range. gradio's own
checks are switched off on these boxes for that reason: they would refuse before the handler, without an
audit line, and echo the value at any length.
Privacy: a diary is personal, so the audit log gets a line saying a mood prediction was made (time,
client, model, latency), or that it was refused and which field was at fault, and never the day's values
(``audited_mood``).
"""

from __future__ import annotations

import html
import io
import logging
import time
from collections.abc import Callable
from typing import Any

import gradio as gr  # the tab is built by the app, which has gradio; gr.Request must resolve here

from huskyai.mood.diary import DiaryError, OutOfRangeError, shown
from huskyai.mood.features import DAY_OF_WEEK, WEEKDAYS, check_days, input_ranges
from huskyai.mood.model import MoodModel, MoodPrediction

SOURCE = "app:mood"
API_NAME = "predict_mood"
FAILED = "The mood model could not answer for this day; nothing was predicted."
_logger = logging.getLogger(__name__)


def input_names(model: MoodModel) -> list[str]:
    """The handler's inputs, in order: the diary's columns, then the day of the week and yesterday's mood."""
    return [*model.numeric, *model.categorical, DAY_OF_WEEK, f"{model.target}_yesterday"]


def day_from_inputs(model: MoodModel, values: tuple[Any, ...]) -> dict[str, Any]:
    """The day as ``MoodModel.predict`` takes it; empty boxes are unknown (the training mean)."""
    day = dict(zip(input_names(model), values))
    return {k: v for k, v in day.items() if v is not None and v != ""}


def checked_day(model: MoodModel, day: dict[str, Any]) -> dict[str, Any]:
    """``day`` with every number in its range and every choice one of its levels, else OutOfRangeError
    naming the field (the ranges: huskyai.mood.features.input_ranges)."""
    for name in (*model.categorical, DAY_OF_WEEK):
        levels = WEEKDAYS if name == DAY_OF_WEEK else model.prep.categories.get(name, [])
        value = day.get(name)
        if value is not None and value != "" and (not isinstance(value, str) or value not in levels):
            raise OutOfRangeError(name, f"{name}: {shown(value)} is not one of {', '.join(levels)}")
    return check_days(day, input_ranges(model.prep, model.target))


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
    """``model.predict(day)``, its values checked first (:func:`checked_day`), with one audit line that records
    THAT a mood prediction was made or refused, never the values: ``data=None`` leaves every content field
    empty, and a refusal names the field at fault at most. A crash is audited as a refusal too."""
    started = time.perf_counter()
    refused = None
    try:
        return model.predict(checked_day(model, day))
    except OutOfRangeError as err:
        refused = f"invalid day: {err.column}"
        raise
    except DiaryError:
        refused = "invalid day"
        raise
    except Exception as err:
        refused = f"failed: {type(err).__name__}"
        raise
    finally:
        if log is not None:
            log.record(source=SOURCE, client=client, data=None, model_sha256=model.model_sha256,
                       latency_ms=(time.perf_counter() - started) * 1000, trust=model.trust, refused=refused)


def handler(model: MoodModel, boxes: list, log=None,
            client_of: Callable[[Any], str] | None = None) -> Callable[..., str]:
    """The event handler: {input box: value} (gradio's form for a set of inputs) in, the reasons' Markdown out;
    gr.Error for a bad value. ``boxes`` are the input boxes in ``input_names`` order."""

    # a set of inputs arrives as one dict, so the request can be a named parameter that gradio fills in (after
    # *values it never is; and gr must be importable from this module for gradio to resolve the annotation)
    def predict_mood(values: dict, request: gr.Request) -> str:
        client = client_of(request) if client_of and request is not None else "app"
        try:
            prediction = audited_mood(model, day_from_inputs(model, [values.get(b) for b in boxes]), log, client)
        except DiaryError as err:
            raise gr.Error(html.escape(str(err))) from None
        except Exception:  # a bug, not the person's doing: one line for them, the traceback for the server's log
            _logger.exception("the mood model failed on a day within its ranges")
            raise gr.Error(FAILED) from None
        return reasons_markdown(prediction, model.synthetic)

    return predict_mood


class _AsSent:
    """A box whose value reaches the handler as sent: the handler checks it (see the module's docstring)."""

    block = ""

    def get_block_name(self) -> str:
        return self.block  # the stock frontend

    def preprocess(self, payload: Any) -> Any:
        return payload


class DayNumber(_AsSent, gr.Number):
    block = "number"


class DayChoice(_AsSent, gr.Dropdown):
    block = "dropdown"


class DaySlider(_AsSent, gr.Slider):
    block = "slider"


def build_mood_tab(model: MoodModel, log=None, client_of: Callable[[Any], str] | None = None,
                   **listener: Any) -> None:
    """The tab's components inside the current Blocks or ``gr.Tab("Mood")``; ``listener`` goes to the
    button's click (e.g. ``concurrency_id``)."""
    from PIL import Image

    typical = model.card.get("typical_day", {})
    units = {c: (model.card.get("units") or {}).get(c) for c in model.numeric}
    ranges = input_ranges(model.prep, model.target)
    inputs = []
    with gr.Row():
        with gr.Column():
            for name in model.numeric:
                label = f"{name} ({units[name]})" if units[name] else name
                allowed = ranges.get(name)
                inputs.append(DayNumber(value=typical.get(name), label=label, info=f"{allowed}" if allowed else None,
                                        minimum=allowed.low if allowed else None,
                                        maximum=allowed.high if allowed else None))
            for name in model.categorical:
                levels = model.prep.categories.get(name, [])
                inputs.append(DayChoice(levels, value=typical.get(name), label=name))
            inputs.append(DayChoice(list(WEEKDAYS), value=None, label="day of week (empty: unknown)"))
            # a Number box left empty reads as 0, far outside the scale: a slider on the diary's own scale instead
            low, high = model.card["target_range"]
            inputs.append(DaySlider(low, high, value=round((low + high) / 2), step=1,
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
