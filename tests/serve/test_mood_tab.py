"""The Mood tab: a diary grouped as a person thinks of a day, one answer with huskyai.mood for the same day,
impossible values refused in one line and audited, never with the day's values. Through gradio's own
processing of a request, as the page sends it (its browser test lives in tests/test_browser.py)."""

from __future__ import annotations

import asyncio
import json

import gradio as gr
import pytest

from huskyai.audit import AuditLog
from huskyai.mood import load
from huskyai.serve.mood_tab import API_NAME, GROUPS, average_day, build_mood_tab, input_names


@pytest.fixture(scope="module")
def mood():
    return load()


@pytest.fixture(scope="module")
def shared_tab(mood):
    """One tab without an audit log for the tests that only ask it (each test with a log builds its own)."""
    return tab(mood)


def tab(model, log=None):
    """The tab's listener as gradio runs it for a request, and its boxes by field name: ``call(**fields)`` sends
    the boxes' starting values with ``fields`` changed, as a person who changed those boxes."""
    with gr.Blocks() as demo:
        boxes = build_mood_tab(model, log=log)
    fn = next(f for f in demo.fns.values() if f.api_name == API_NAME)

    def call(**fields):
        values = {name: box.value for name, box in boxes.items()} | fields
        inputs = [values[name] for name in fn.input_parameter_names]
        return asyncio.run(demo.process_api(block_fn=fn, inputs=inputs, state=None))["data"][0]

    return call, boxes, demo


def mood_of(answer: str) -> float:
    return float(answer.split("Predicted mood: ", 1)[1].split(" ", 1)[0])


@pytest.mark.parametrize("fields", [{"sleep_hours": 9, "run_km": 5}, {}, {"coffee_cups": 6, "weather": "rainy"},
                                    {"mood_yesterday": 2, "day_of_week": "Sat", "steps": 15000}])
def test_the_page_and_huskyai_mood_give_one_answer_for_the_same_day(mood, shared_tab, fields):
    """Before: sleep 9 and run 5 gave 3.70 on the page and 4.085 in Python, because the page sent 20 other
    values (the card's median day, yesterday's mood 3) where Python takes the average day for a missing field.
    The boxes now start at that average day and a box left at it is not sent."""
    call, _, _ = shared_tab
    assert mood_of(call(**fields)) == mood.predict(fields).mood
    if fields == {"sleep_hours": 9, "run_km": 5}:
        assert mood.predict(fields).mood == pytest.approx(4.085, abs=0.002)


def test_the_tab_reads_as_a_diary_grouped_labelled_with_units_and_ranges(mood, shared_tab):
    _, boxes, demo = shared_tab
    assert set(boxes) == set(input_names(mood))
    labels = {name: box.label for name, box in boxes.items()}
    assert labels["sleep_hours"] == "Sleep (hours)" and labels["run_km"] == "Running (km)"
    assert labels["mood_yesterday"] == "Yesterday's mood" and labels["temperature_c"] == "Temperature (°C)"
    assert not any("_" in text for text in labels.values())  # no raw snake_case name is shown
    assert boxes["sleep_hours"].info == "0 to 24 hours" and boxes["steps"].info == "0 to 200,000"
    assert (boxes["sleep_hours"].minimum, boxes["sleep_hours"].maximum) == (0, 24)
    headings = [b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown)]
    assert [h for h in headings if h.startswith("**") and h.endswith("**")] == [f"**{t}**" for t, _ in GROUPS]
    assert all(boxes[n].value == v for n, v in average_day(mood).items())  # the average day, as shown


def test_at_the_average_day_nothing_pushes_and_an_empty_box_is_named(mood, shared_tab):
    call, _, _ = shared_tab
    average = call()
    # only the weather may push: huskyai.mood takes an unknown category as none of its levels, not as their mix
    pushed = [line for line in average.splitlines() if line.startswith("- ")]
    assert all(line.startswith("- **Weather**") for line in pushed), average
    emptied = call(sleep_hours=None)
    assert "Left empty, so taken as the average day: Sleep (hours)." in emptied
    assert mood_of(emptied) == mood.predict({}).mood


IMPOSSIBLE = [1e300, 10**400, float("inf"), float("nan"), -30, "1e999", "x" * 100_000]


@pytest.mark.parametrize("value", IMPOSSIBLE, ids=["1e300", "10**400", "inf", "nan", "-30h", "1e999", "100k_text"])
def test_an_impossible_value_is_refused_naming_its_field_and_range_and_audited(tmp_path, mood, value):
    """1e300 or 10**400 hours of sleep crashed the model and were audited as an answer; infinity gave a mood;
    -30 hours of sleep was accepted silently."""
    log_path = tmp_path / "audit.jsonl"
    call, _, _ = tab(mood, AuditLog(log_path))
    assert "Predicted mood" in call(sleep_hours=8)
    with pytest.raises(gr.Error) as refused:
        call(sleep_hours=value)
    message = refused.value.message
    assert message.startswith("Sleep (hours): ") and "0 to 24 hours" in message and len(message) < 200, message
    answer, refusal = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert answer["refused"] is None and answer["source"] == refusal["source"] == "app:mood"
    assert refusal["refused"] == "invalid day: sleep_hours" and refusal["label"] is None
    assert "1e" not in log_path.read_text() and "-30" not in log_path.read_text()  # never the values


@pytest.mark.parametrize("field,value,said", [
    ("mood_yesterday", 9, "Yesterday's mood: 9 is not possible; give a number from 1 to 5"),
    ("weather", "<b>snow</b>", "Weather: '&lt;b&gt;snow&lt;/b&gt;' is not one of cloudy, rainy, sunny"),
    ("day_of_week", "Caturday", "Day of the week: 'Caturday' is not one of Mon, Tue"),
    ("steps", -1, "Steps: -1 is not possible; give a number from 0 to 200,000"),
])
def test_every_field_is_held_to_its_range_or_choices(tmp_path, mood, field, value, said):
    """A value the page's boxes cannot send (a forged API call) is refused by the handler, audited, and never
    refused by gradio first (which would leave no audit line and echo the value at any length)."""
    log_path = tmp_path / "audit.jsonl"
    call, _, _ = tab(mood, AuditLog(log_path))
    with pytest.raises(gr.Error) as refused:
        call(**{field: value})
    assert refused.value.message.startswith(said), refused.value.message
    (line,) = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert line["refused"] == f"invalid day: {field}"


def test_a_crash_is_audited_as_a_refusal(tmp_path):
    """A failure inside the model (here: a model whose graph cannot run) is a refusal in the log, never an
    answer, and the person reads one line."""
    model = load()
    model.session = None  # the graph is gone: predict fails inside the model, past every check
    log_path = tmp_path / "audit.jsonl"
    call, _, _ = tab(model, AuditLog(log_path))
    with pytest.raises(gr.Error, match="could not answer for this day"):
        call(sleep_hours=8)
    (line,) = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert line["refused"] == "failed: AttributeError" and line["label"] is None


def test_the_api_names_every_parameter_and_the_answer(mood, shared_tab):
    """gradio's "Use via API" showed /predict_mood(values, param_1 ... param_21) -> value_45."""
    _, _, demo = shared_tab
    info = demo.get_api_info()["named_endpoints"][f"/{API_NAME}"]
    assert {p["parameter_name"] for p in info["parameters"]} == set(input_names(mood))  # sleep_hours, run_km, ...
    assert all(not p["label"].startswith("parameter_") for p in info["parameters"])
    assert [r["label"] for r in info["returns"]] == ["Predicted mood"]
    assert {p["component"] for p in info["parameters"]} == {"Number", "Dropdown"}
