"""The mood model (huskyai.mood): diary checks, the synthetic generator, honest training, export, serving."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from huskyai.cli.mood import add_mood
from huskyai.errors import IntegrityError
from huskyai.mood import load
from huskyai.mood.diary import DiaryError, read_diary
from huskyai.mood.export import default_schema, train_export
from huskyai.mood.features import LagRules, engineer
from huskyai.mood.model import shipped_folder
from huskyai.mood.sample import NO_EFFECT, SCHEMA, TRUE_EFFECTS, generate, write_sample
from huskyai.trust import exports

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "diary.csv"
    path.write_text(text)
    return path


def small_csv(tmp_path: Path, rows: list[str], header: str = "date,sleep_hours,weather,mood") -> Path:
    return write(tmp_path, header + "\n" + "\n".join(rows) + "\n")


def days(n: int, start: int = 1) -> list[str]:
    return [f"2026-03-{d:02d},{6 + d % 3},sunny,{1 + d % 5}" for d in range(start, start + n)]


def mood_cli(*argv: str) -> str:
    parser = argparse.ArgumentParser()
    add_mood(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["mood", *argv])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert args.run(args) == 0
    return out.getvalue()


# ---- reading a diary -------------------------------------------------------------------------------

def test_any_columns_become_features_typed_by_content(tmp_path):
    diary = read_diary(small_csv(tmp_path, days(30)), min_days=30)
    assert diary.numeric == ["sleep_hours"] and diary.categorical == ["weather"] and diary.target == "mood"
    assert len(diary.days) == 30 and diary.days.index.is_monotonic_increasing


def test_problems_name_the_line_and_column_and_are_skipped(tmp_path):
    rows = days(30) + ["2026-03-05,7,sunny,3", "not-a-day,7,sunny,3", "2026-04-02,lots,rainy,2",
                       "2026-04-03,,rainy,2", "2026-04-04,7,rainy,", "2026-04-05,-30,sunny,3",
                       "2026-04-06,1e300,sunny,3"]
    diary = read_diary(small_csv(tmp_path, rows), min_days=30)
    text = "\n".join(diary.problems)
    assert "line 32, column 'date': 2026-03-05 is a duplicate of line 6; row skipped" in text
    assert "line 33, column 'date': 'not-a-day' is not a date" in text
    assert "line 34, column 'sleep_hours': 'lots' is not a number; treated as missing" in text
    assert "column 'sleep_hours': 1 blank cell(s) (line 35)" in text
    assert "line 36, column 'mood': no value; not a training day" in text
    assert "missing day(s) before 2026-04-02" in text
    assert "line 37, column 'sleep_hours': '-30' is outside its range, 0 to 24 h; treated as missing" in text
    assert "line 38, column 'sleep_hours': '1e300' is outside its range, 0 to 24 h; treated as missing" in text
    assert diary.days.loc["2026-04-05":, "sleep_hours"].isna().all()
    assert np.isnan(diary.days.loc["2026-04-02", "sleep_hours"]) and diary.days.loc["2026-03-05", "mood"] == 1 + 5 % 5


def test_unknown_target_and_too_few_days_are_refused_clearly(tmp_path):
    path = small_csv(tmp_path, days(10))
    with pytest.raises(DiaryError, match="target 'happiness' is not a column; choose one with --target "
                                         r"\(columns: sleep_hours, weather, mood\)"):
        read_diary(path, "happiness")
    with pytest.raises(DiaryError, match="only 10 usable days; at least 30"):
        read_diary(path)
    with pytest.raises(DiaryError, match="no 'date' column"):
        read_diary(write(tmp_path, "day,mood\n1,3\n"))
    with pytest.raises(DiaryError, match="cannot read the diary"):
        read_diary(tmp_path / "nothing.csv")


def test_target_option_picks_another_column(tmp_path):
    diary = read_diary(small_csv(tmp_path, days(30)), target="sleep_hours", min_days=30)
    assert diary.target == "sleep_hours" and "mood" in diary.numeric


# ---- the synthetic diary and the template --------------------------------------------------------------

def test_generated_diary_is_realistic_and_reproducible():
    frame = generate(365, seed=0)
    assert frame.equals(generate(365, seed=0)) and not frame.equals(generate(365, seed=1))
    assert 330 < len(frame) < 365  # some days are missing
    assert len(frame.columns) == 22 and frame.drop(columns="date").isna().to_numpy().mean() > 0.005
    assert set(frame["mood"].dropna().unique()) <= {1, 2, 3, 4, 5} and frame["mood"].nunique() == 5
    weekend = frame["date"].dt.dayofweek >= 5
    assert frame["mood"][weekend].mean() > frame["mood"][~weekend].mean()


def test_template_and_schema_match_the_generator():
    package = ROOT / "huskyai" / "mood"
    header = (package / "diary-template.csv").read_text().strip().split(",")
    assert header == ["date", *SCHEMA, "mood"]
    schema = default_schema()
    without_ranges = {c: {k: v for k, v in spec.items() if k != "range"} for c, spec in schema["columns"].items()}
    assert without_ranges == SCHEMA and schema["target"] == "mood"
    assert not schema["columns"]["weather"]["controls"] and schema["columns"]["sleep_hours"]["controls"]
    # every numeric column has a range, and the generator's days are within it
    frame = generate(365, seed=0)
    for column in SCHEMA:
        if column != "weather":
            low, high = schema["columns"][column]["range"]
            values = frame[column].dropna().astype(float)
            assert low <= values.min() and values.max() <= high, column


def test_features_use_only_the_past():
    frame = generate(60, seed=3, missing_days=0, missing_cells=0)
    diary = read_diary(frame)
    before, _ = engineer(diary.days, diary.numeric, diary.categorical, "mood", LagRules())
    changed = diary.days.copy()
    changed.loc[changed.index[40]:, ["mood", "sleep_hours"]] = [5, 11.0]  # rewrite day 40 onwards
    after, _ = engineer(changed, diary.numeric, diary.categorical, "mood", LagRules())
    pd.testing.assert_frame_equal(before.iloc[:41].drop(columns="sleep_hours"),
                                  after.iloc[:41].drop(columns="sleep_hours"))
    assert "mood" not in before.columns and after["mood_yesterday"].iloc[41] == 5
    assert after["sleep_hours_mean7"].iloc[41] != before["sleep_hours_mean7"].iloc[41]


# ---- training, export, serving (scikit-learn only: seconds) ------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Ridge alone on a generated year (seconds, most of them importing scikit-learn, skl2onnx and matplotlib);
    the comparison with HGB and fastai is another test. What needs only a mood model uses the shipped one (ridge
    on the same generated year), so the fast loop trains nothing."""
    folder = tmp_path_factory.mktemp("mood")
    csv, _ = write_sample(folder / "diary.csv", days=365, seed=0)
    card = train_export(csv, folder / "export", models=("ridge",), folds=4, sign=True)
    return folder, card


def beats_the_baselines(card: dict, model: str, by: float = 0.85) -> bool:
    metrics = card["validation"]["metrics"]
    return metrics[model]["mae"] < by * min(metrics[b]["mae"] for b in ("yesterday", "overall_mean", "mean_7_days"))


@pytest.mark.slow  # trains
def test_model_beats_the_baselines_and_ships_with_its_plots(trained):
    folder, card = trained
    assert card["model"] == card["validation"]["winner"] == "ridge" and beats_the_baselines(card, "ridge")
    assert [f["validation_to"] for f in card["validation"]["folds"]] == sorted(
        f["validation_to"] for f in card["validation"]["folds"])
    assert card["data"]["synthetic"] is True and "SYNTHETIC" in card["data"]["note"]
    assert sorted(card["files"]) == sorted(exports.MOOD_NAMES)
    for png in ("importance.png", "validation.png"):
        assert (folder / "export" / png).read_bytes().startswith(b"\x89PNG")
    assert "signed" in load(folder / "export").trust  # signed with this run's key, so it loads


@pytest.mark.slow  # trains
def test_importance_recovers_the_true_effects(trained):
    _, card = trained
    rank = {row["feature"]: i for i, row in enumerate(card["importance"])}
    strong = [f for f, e in TRUE_EFFECTS.items() if f not in ("violin_min", "reading_min", "meditation_min")]
    no_effect = ["money_spent", "coffee_cups", "steps", "meals_cooked", "tv_min"]
    assert set(no_effect) <= set(NO_EFFECT)
    assert max(rank[f] for f in strong) < min(rank[f] for f in no_effect), card["importance"]
    assert card["importance"][0]["feature"] == "sleep_hours"


def test_loaded_model_predicts_a_day_with_reasons():
    """(Without torch or scikit-learn in a fresh process: tests/inference/test_engine.py's serving path.)"""
    model = load()
    assert model.synthetic
    good = model.predict({"sleep_hours": 9, "run_km": 10, "alcohol_units": 0, "date": "2026-12-05"})
    bad = model.predict({"sleep_hours": 4.5, "run_km": 0, "alcohol_units": 0, "date": "2026-12-05"})
    assert good.mood > bad.mood + 1 and 1 <= bad.score <= good.score <= 5
    assert good.reasons[0]["feature"] == "sleep_hours" and good.reasons[0]["push"] > 0


def test_a_frame_of_days_gets_its_own_history():
    model = load()
    frame = generate(20, seed=9, missing_days=0, missing_cells=0)
    with_moods = [p.mood for p in model.predict(frame, explain=False)]
    low_past = [p.mood for p in model.predict(frame.assign(mood=1), explain=False)]
    assert len(with_moods) == 20 and with_moods[0] == low_past[0] and with_moods[5:] != low_past[5:]
    with pytest.raises(DiaryError, match="(column ')?sleep_hours'?: 'lots' is not a number"):
        model.predict({"sleep_hours": "lots"})
    with pytest.raises(DiaryError, match="unknown column"):
        model.predict({"happiness": 3})


@pytest.mark.slow  # trains
def test_loading_refuses_a_changed_or_unsigned_export(trained, tmp_path):
    folder, _ = trained
    export = folder / "export"
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in export.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    graph = bytearray((copy / "mood.onnx").read_bytes())
    graph[-1] ^= 1
    (copy / "mood.onnx").write_bytes(bytes(graph))
    with pytest.raises(IntegrityError, match="does not match the model card"):
        load(copy)
    card = json.loads((export / "model.json").read_text())
    card.pop("signature")
    (copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(IntegrityError, match="not signed and not pinned"):
        load(copy)


def test_cli_predict_and_evaluate(tmp_path):
    csv, _ = write_sample(tmp_path / "new.csv", days=40, seed=7)
    predicted = mood_cli("predict", "--csv", str(csv), "--model", str(shipped_folder()), "--json")
    rows = json.loads(predicted)
    assert len(rows) == len(pd.read_csv(csv)) and rows[0]["date"] == "2026-01-01"
    pd.read_csv(csv).drop(columns=["sleep_hours", "steps"]).to_csv(tmp_path / "fewer.csv", index=False)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        mood_cli("predict", "--csv", str(tmp_path / "fewer.csv"), "--model", str(shipped_folder()), "--json")
    assert "has no column sleep_hours, steps; treated as unknown on every day" in err.getvalue()
    scored = json.loads(mood_cli("evaluate", "--csv", str(csv), "--model", str(shipped_folder()), "--json"))
    assert scored["metrics"]["model"]["mae"] < scored["metrics"]["overall_mean"]["mae"]


def test_cli_sample_writes_the_diary_and_its_truth(tmp_path):
    out = mood_cli("sample", "--days", "50", "--seed", "2", "--out", str(tmp_path / "d.csv"))
    assert "SYNTHETIC" in out and len(pd.read_csv(tmp_path / "d.csv")) > 40
    assert json.loads((tmp_path / "d.effects.json").read_text())["effects"] == TRUE_EFFECTS


# ---- the shipped model ---------------------------------------------------------------------------------

def test_shipped_mood_model_is_pinned_and_synthetic():
    card_bytes = (shipped_folder() / "model.json").read_bytes()
    assert exports.sha256(card_bytes) == exports.SHIPPED_CARDS["mood"]
    model = load()
    assert "pinned in the huskyai package" in model.trust and model.synthetic
    assert 1 <= model.predict(model.card["typical_day"]).score <= 5


@pytest.mark.slow
def test_three_models_compete_and_the_best_ships(tmp_path):
    csv, _ = write_sample(tmp_path / "diary.csv", days=200, seed=4)
    card = train_export(csv, tmp_path / "export", models=("ridge", "hgb", "fastai"), folds=2, sign=True)
    metrics = card["validation"]["metrics"]
    assert card["model"] == min(("ridge", "hgb", "fastai"), key=lambda m: metrics[m]["mae"])
    assert all(beats_the_baselines(card, m, by=1.0) for m in ("ridge", "hgb", "fastai")), metrics
    assert card["onnx_check"]["max_abs_diff"] < 1e-3
    assert load(tmp_path / "export").predict({"sleep_hours": 8}).score in range(1, 6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hgb", "fastai"])
def test_hgb_and_fastai_export_to_the_same_onnx_contract(tmp_path, name):
    csv, _ = write_sample(tmp_path / "diary.csv", days=120, seed=5)
    card = train_export(csv, tmp_path / "export", models=(name,), folds=2, sign=True)
    assert card["model"] == name and card["onnx_check"]["max_abs_diff"] < 1e-3
    model = load(tmp_path / "export")
    assert model.predict({"sleep_hours": 9}).mood >= model.predict({"sleep_hours": 4}).mood


# ---- attacks and refusals (the Mood tab's own tests live in tests/serve/test_mood_tab.py) ----------------------

def test_mood_evasion_moves_a_day_by_one_point_changing_only_what_a_person_controls(tmp_path):
    from huskyai.mood.evasion import mood_evasion

    model = load()
    result = mood_evasion(model, tmp_path, limit=6)
    assert result["n"] == 6 and result["success_rate"] >= 0.5
    for run in result["runs"]:
        assert set(run["changes"]) <= set(model.card["features"]["controls"]) and "weather" not in run["changes"]
        if run["success"]:
            assert abs(run["end"] - run["start"]) >= 1.0 and run["changes"]
    assert json.loads((tmp_path / "mood-evasion.json").read_text())["attack"] == "mood-evasion"
    assert (tmp_path / "mood-evasion.md").read_text().startswith("# Mood evasion")


@pytest.mark.parametrize("value", [1e300, 10**400, float("inf"), float("nan"), -30])
def test_python_predict_refuses_impossible_values_with_one_line(value):
    """huskyai.mood's own predict holds a day to the same ranges as the page (10**400 was an OverflowError
    traceback; 1e300 and infinity gave a mood of 5)."""
    from huskyai.mood.diary import OutOfRangeError

    model = load()
    with pytest.raises(OutOfRangeError, match=r"^sleep_hours: .*0 to 24 h"):
        model.predict({"sleep_hours": value})
    with pytest.raises(OutOfRangeError, match=r"^sleep_hours_yesterday: .*0 to 24 h"):
        model.predict({"sleep_hours_yesterday": value})
    frame = pd.DataFrame({"date": ["2026-03-01", "2026-03-02"], "sleep_hours": [7.0, value]}, dtype=object)
    if value == value:  # in a frame NaN is a blank cell, as pandas has it
        with pytest.raises(OutOfRangeError, match=r"^row 2, sleep_hours: .*0 to 24 h"):
            model.predict(frame)
    assert model.predict({"sleep_hours": 24}).mood > 0  # the ends of a range are allowed


def test_training_in_python_never_lands_on_the_shipped_mood_model(tmp_path):
    """The CLI's default moved away from export-mood/; the Python call refuses it too, before any work."""
    from huskyai.errors import DataError
    from huskyai.mood.export import train_export
    from huskyai.mood.model import shipped_folder

    before = {p.name: p.read_bytes() for p in shipped_folder().iterdir() if p.is_file()}
    with pytest.raises(DataError, match="shipped mood model"):
        train_export(tmp_path / "no-diary.csv", shipped_folder())
    assert {p.name: p.read_bytes() for p in shipped_folder().iterdir() if p.is_file()} == before
