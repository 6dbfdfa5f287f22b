"""The "Mood" tab: a day's diary in, the predicted mood and what pushed it out (the app places it inside
``gr.Tab("Mood")``).

The tab reads as a diary: the fields are grouped as a person thinks of a day (:data:`GROUPS`: sleep and body,
activity, people, work and screens, the day), each with a human label and its unit, and the range the diary
schema allows (huskyai/mood/diary-schema.json, read through huskyai.mood.features.input_ranges) under it.

One answer for the same day, here and in Python: every box starts at the model's average day, the day
``huskyai.mood.load().predict`` assumes for a field it is not given (the training days' mean; a choice left
"not recorded"), which is also the day the reasons compare against. A box left at that value is not sent,
exactly as a field left out of the dict in Python (:func:`day_from_inputs`, the one function that makes the
day from the boxes). So ``predict({"sleep_hours": 9, "run_km": 5})`` and the page with those two boxes
changed give the same mood. A box left empty is unknown too, and the answer names it.

Every value is checked before the model runs (huskyai.mood.features.check_days: the diary schema's ranges;
a choice must be one of its levels): a value no day can have (-30 hours of sleep, 1e300, infinity, NaN,
text) is refused in one line naming the field and its range. gradio's own checks are off on these boxes
(huskyai.serve.gradio_adapter's AsSent classes): they would refuse before the handler, without an audit line,
and echo the value at any length.
Privacy: a diary is personal, so the audit log gets a line saying a mood prediction was made (time,
client, model, latency), or that it was refused and which field was at fault, and never the day's values
(:func:`audited_mood`).
"""

from __future__ import annotations

import html
import io
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import gradio as gr  # the tab is built by the app, which has gradio; gr.Request must resolve here

from huskyai.mood.diary import DiaryError, OutOfRangeError, Range, shown
from huskyai.mood.features import DAY_OF_WEEK, WEEKDAYS, check_days, input_ranges
from huskyai.mood.model import MoodModel, MoodPrediction
from huskyai.serve.gradio_adapter import AsSentDropdown, AsSentNumber
from huskyai.serve.metrics import MOOD, ServeMetrics
from huskyai.serve.refusals import Refusal

SOURCE = "app:mood"
API_NAME = "predict_mood"
FAILED = "The mood model could not answer for this day; nothing was predicted."
NOT_RECORDED = "not recorded"  # a choice left unknown, as a field left out in Python
YESTERDAY = "{target}_yesterday"
GROUPS = (  # (heading, the diary's columns in it); a column not listed goes under OTHER
    ("Sleep and body", ("sleep_hours", "meditation_min", "coffee_cups", "alcohol_units", "meals_cooked")),
    ("Activity", ("run_km", "bike_km", "steps", "outdoor_hours", "violin_min", "reading_min")),
    ("People", ("social_interactions",)),
    ("Work and screens", ("work_hours", "commute_min", "emails_sent", "screen_hours", "tv_min")),
    ("The day", ("weather", "temperature_c", "money_spent", DAY_OF_WEEK, YESTERDAY)),
)
OTHER = "Other columns of this diary"
LABELS = {
    "sleep_hours": "Sleep", "meditation_min": "Meditation", "coffee_cups": "Coffee", "alcohol_units": "Alcohol",
    "meals_cooked": "Meals cooked", "run_km": "Running", "bike_km": "Cycling", "steps": "Steps",
    "outdoor_hours": "Time outdoors", "violin_min": "Violin practice", "reading_min": "Reading",
    "social_interactions": "People you talked with", "work_hours": "Work", "commute_min": "Commute",
    "emails_sent": "Emails sent", "screen_hours": "Screen time", "tv_min": "TV", "weather": "Weather",
    "temperature_c": "Temperature", "money_spent": "Money spent", DAY_OF_WEEK: "Day of the week",
    YESTERDAY: "Yesterday's mood",
}
# a schema unit as a person reads it, and the decimals a box shows of it
UNITS = {"h": ("hours", 1), "km": ("km", 1), "min": ("minutes", 0), "count": ("", 0), "cups": ("cups", 0),
         "units": ("units", 1), "EUR": ("EUR", 0), "C": ("°C", 1)}
_logger = logging.getLogger(__name__)


def input_names(model: MoodModel) -> list[str]:
    """The handler's inputs, in order: the diary's columns, then the day of the week and yesterday's mood."""
    return [*model.numeric, *model.categorical, DAY_OF_WEEK, YESTERDAY.format(target=model.target)]


def label(model: MoodModel, name: str) -> str:
    """The field's human label, with its unit: "Sleep (hours)"."""
    key = YESTERDAY if name == YESTERDAY.format(target=model.target) else name
    text = LABELS.get(key, name.replace("_", " ").capitalize())
    unit = _unit(model, name)[0]
    return f"{text} ({unit})" if unit else text


def average_day(model: MoodModel) -> dict[str, float]:
    """The value each number box starts at: the model's average day, as the box shows it (rounded to the
    unit's decimals). Left at it, a box is not sent, and the model takes the exact average, as in Python."""
    means = dict(zip(model.prep.numeric, model.prep.means))
    names = [n for n in input_names(model) if n in means]
    return {n: round(float(means[n]), _unit(model, n)[1]) for n in names}


def day_from_inputs(model: MoodModel, values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The day as ``MoodModel.predict`` takes it, from the boxes' values by field name, and the fields left
    empty. A box at its starting value, an empty box and a choice left "not recorded" are left out of the
    day: the model then takes its average day for them, as Python's ``predict`` does for a missing field."""
    start = average_day(model)
    day, empty = {}, []
    for name in input_names(model):
        value = values.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            empty.append(name)
        elif value == NOT_RECORDED or (name in start and _same_number(value, start[name])):
            continue
        else:
            day[name] = value
    return day, empty


def checked_day(model: MoodModel, day: dict[str, Any]) -> dict[str, Any]:
    """``day`` with every number in its range and every choice one of its levels, else OutOfRangeError
    naming the field (the ranges: huskyai.mood.features.input_ranges)."""
    for name in (*model.categorical, DAY_OF_WEEK):
        levels = WEEKDAYS if name == DAY_OF_WEEK else model.prep.categories.get(name, [])
        value = day.get(name)
        if value is not None and value != "" and (not isinstance(value, str) or value not in levels):
            raise OutOfRangeError(name, f"{name}: {shown(value)} is not one of {', '.join(levels)}")
    return check_days(day, input_ranges(model.prep, model.target))


def refusal_text(model: MoodModel, err: OutOfRangeError, value: Any) -> str:
    """The person's message for a refused field: its label, the value (bounded) and what is allowed."""
    allowed = input_ranges(model.prep, model.target).get(err.column)
    if allowed is None:
        levels = WEEKDAYS if err.column == DAY_OF_WEEK else model.prep.categories.get(err.column, [])
        return f"{label(model, err.column)}: {shown(value)} is not one of {', '.join(levels)}."
    return f"{label(model, err.column)}: {shown(value)} is not possible; give a number from {_range_text(allowed)}."


def reasons_markdown(model: MoodModel, prediction: MoodPrediction, empty: list[str] = (), shown_: int = 6) -> str:
    """The answer: the mood as ``huskyai.mood`` gives it, and which fields pushed it up or down against the
    average day."""
    low, high = model.card["target_range"]
    lines = [f"### Predicted mood: {prediction.mood:g} on a scale of {low:g} to {high:g} (about {prediction.score})"]
    if model.synthetic:
        lines.append("*This model was trained on a SYNTHETIC diary, not on anyone's real mood.*")
    pushes = [r for r in prediction.reasons[:shown_] if abs(r["push"]) >= 0.005]
    lines.append("Compared with the average day:" if pushes else "That is the average day: nothing pushed it.")
    for reason in pushes:
        way = "up" if reason["push"] > 0 else "down"
        name = reason["feature"]
        text = LABELS.get(YESTERDAY if name == model.target else name, name)
        lines.append(f"- **{html.escape(text)}** pushed it {way} by {abs(reason['push']):.2f}")
    if empty:
        lines.append("Left empty, so taken as the average day: "
                     + ", ".join(html.escape(label(model, n)) for n in empty) + ".")
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


def handler(model: MoodModel, log=None, client_of: Callable[[Any], str] | None = None,
            metrics: ServeMetrics | None = None) -> Callable[..., str]:
    """The event handler: the day's fields as keyword arguments (their names are the API's parameters), the
    answer's Markdown out; gr.Error, one line naming the field, for a value no day can have. ``metrics`` counts
    each answer (labelled "mood", never with the day's mood) and each refusal."""
    metrics = metrics or ServeMetrics()

    def predict_mood(request: gr.Request, **values: Any) -> str:
        with metrics.timed(MOOD):
            client = client_of(request) if client_of and request is not None else "app"
            day, empty = day_from_inputs(model, values)
            try:
                prediction = audited_mood(model, day, log, client)
            except OutOfRangeError as err:
                metrics.refused(Refusal.INVALID_DAY)
                message = html.escape(refusal_text(model, err, day.get(err.column)), quote=False)
                raise gr.Error(message, title="Check the day", print_exception=False) from None
            except DiaryError as err:
                metrics.refused(Refusal.INVALID_DAY)
                raise gr.Error(html.escape(str(err)), print_exception=False) from None
            except Exception:  # a bug, not the person's doing: one line for them, the traceback for the server's log
                metrics.refused(Refusal.FAILED)
                _logger.exception("the mood model failed on a day within its ranges")
                raise gr.Error(FAILED, print_exception=False) from None
        metrics.answered(MOOD, MOOD)
        return reasons_markdown(model, prediction, empty)

    return predict_mood


def build_mood_tab(model: MoodModel, log=None, client_of: Callable[[Any], str] | None = None,
                   metrics: ServeMetrics | None = None, **listener: Any) -> dict[str, gr.components.Component]:
    """The tab's components inside the current Blocks or ``gr.Tab("Mood")``, grouped as a diary; ``listener``
    goes to the button's click (e.g. ``concurrency_id``). Returns the input boxes by field name."""
    from PIL import Image

    names = input_names(model)
    listed = {n for _, group in GROUPS for n in group}
    yesterday = YESTERDAY.format(target=model.target)
    groups = [(title, [yesterday if n == YESTERDAY else n for n in group]) for title, group in GROUPS]
    groups.append((OTHER, [n for n in names if n not in listed and n != yesterday]))
    start = average_day(model)
    boxes: dict[str, gr.components.Component] = {}
    gr.Markdown("What was your day like? Every box starts at the average day of the diary the model learnt "
                "from; change what was different today.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            for title, group in groups:
                fields = [n for n in group if n in names]
                if not fields:
                    continue
                with gr.Group():
                    gr.Markdown(f"**{title}**", padding=True)
                    with gr.Row():
                        for name in fields:
                            boxes[name] = _box(model, name, start.get(name))
        with gr.Column(scale=2):
            button = gr.Button("Predict my mood", variant="primary")
            answer = gr.Markdown("The predicted mood appears here.", label="Predicted mood", elem_id="mood-answer")
            picture = model.artifacts.get("importance.png")
            if picture:  # its own title says what it shows: no label or buttons over it to cover the title
                gr.Markdown("**What the model relies on** (validation days)")
                gr.Image(Image.open(io.BytesIO(picture)), label="What the model relies on (validation days)",
                         show_label=False, buttons=[], interactive=False, format="png", elem_id="mood-importance")
    button.click(handler(model, log, client_of, metrics), inputs_kwargs=boxes, outputs=answer, api_name=API_NAME,
                 api_description="The predicted mood of one day, and what pushed it up or down. Leave a field "
                                 "out (or at its average) for the model's average day.", **listener)
    return boxes


def _box(model: MoodModel, name: str, start: float | None) -> gr.components.Component:
    """One field's box: a choice for categories, the day of the week; a number within its range otherwise."""
    if name == DAY_OF_WEEK or name in model.categorical:
        levels = list(WEEKDAYS) if name == DAY_OF_WEEK else model.prep.categories.get(name, [])
        return AsSentDropdown([NOT_RECORDED, *levels], value=NOT_RECORDED, label=label(model, name), min_width=160)
    allowed = input_ranges(model.prep, model.target).get(name)
    return AsSentNumber(value=start, label=label(model, name), min_width=160,
                        info=_range_text(allowed) if allowed else None,
                        minimum=allowed.low if allowed and math.isfinite(allowed.low) else None,
                        maximum=allowed.high if allowed and math.isfinite(allowed.high) else None)


def _unit(model: MoodModel, name: str) -> tuple[str, int]:
    """The unit a person reads for a field, and the decimals its box shows (from the schema's unit)."""
    if name == YESTERDAY.format(target=model.target):
        return "", 1
    unit = (model.card.get("units") or {}).get(name) or \
        input_ranges(model.prep, model.target).get(name, Range(0, 0)).unit
    return UNITS.get(unit, (unit if unit != "category" else "", 1))


def _range_text(allowed: Range) -> str:
    words = {"h": "hours", "min": "minutes", "C": "°C"}
    unit = words.get(allowed.unit, allowed.unit)
    unit = "" if unit in ("count", "category", "units", "cups", "") else f" {unit}"
    return f"{_number(allowed.low)} to {_number(allowed.high)}{unit}"


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:g}"


def _same_number(value: Any, start: float) -> bool:
    try:
        return math.isclose(float(value), start, rel_tol=0, abs_tol=1e-9)
    except (TypeError, ValueError, OverflowError):
        return False
