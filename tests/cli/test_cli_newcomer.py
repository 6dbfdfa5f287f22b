"""The commands as a newcomer meets them (huskyai ...): what they print and where they write. On a serving install
(one line naming the missing extra, training refused on the shipped folder): tests/test_packaging.py."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from conftest import SHARED_HUSKIES, huskyai_process, make_toy_dataset, skimage_photo
from huskyai.mood.model import shipped_folder as shipped_mood_folder
from huskyai.mood.sample import generate
from huskyai.trust import exports


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("newcomer")
    cat = folder / "cat.jpg"
    skimage_photo("chelsea").save(cat)
    return {"folder": folder, "cat": cat, "toy": make_toy_dataset(folder / "toy", 2, 64)}


# ---- training never lands on the shipped model (on a serving install: tests/test_packaging.py) --------

def test_the_default_training_folder_is_a_new_run_folder(cli):
    from huskyai.api import default_out
    from huskyai.cli.main import build_parser

    assert build_parser().parse_args(["train", "--data", "d"]).out is None  # the API picks it, at the run's start
    for kind in ("husky", "mood"):
        out = default_out(kind).resolve()
        assert out.parent.name == "runs" and out.name.startswith(f"{kind}-")
        assert out not in (exports.DEFAULT_EXPORT.resolve(), shipped_mood_folder().resolve())
    assert "runs/husky-<date>-<time>" in cli("train", "--help").stdout
    assert "runs/mood-<date>-<time>" in cli("mood", "train", "--help").stdout


@pytest.mark.slow
def test_a_first_training_run_says_how_to_use_its_model(tmp_path, files, cli):
    """As a newcomer runs it: no --out, in a folder of their own. The export lands in runs/, and the command it
    prints at the end answers."""
    proc = cli("train", "--data", files["toy"], "--size", "64", "--valid-pct", "0.5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("husky-") and (run / exports.CARD_NAME).is_file()
    predict = next(line.split() for line in proc.stdout.splitlines() if line.strip().startswith("huskyai predict"))
    assert predict[2:] == ["photo.jpg", "--model", f"runs/{run.name}"]  # as the newcomer can type it, from here
    assert f"HUSKYAI_MODEL=runs/{run.name} python app.py" in proc.stdout
    answer = cli("predict", files["cat"], "--model", predict[-1], cwd=tmp_path)
    assert answer.returncode == 0 and answer.stdout.splitlines()[1].startswith(str(files["cat"])), answer.stderr


# ---- the mood commands say what they did ----------------------------------------------------------

def test_mood_sample_says_how_many_days_the_file_holds(tmp_path, cli):
    proc = cli("mood", "sample", "--days", "365", "--out", tmp_path / "diary.csv")
    rows = len(pd.read_csv(tmp_path / "diary.csv"))
    assert proc.returncode == 0 and rows < 365  # a real diary has gaps, and so does the sample
    assert f": {rows} days ({365 - rows} of 365 left out, as a real diary has gaps)" in proc.stdout, proc.stdout


def test_mood_evaluate_warns_on_the_days_the_model_was_trained_on(tmp_path, cli):
    """The shipped mood model's own training diary (seed 0, 365 days) gives in-sample numbers: the command says
    so and names the card's validation MAE. Days after the training year get no warning."""
    card = json.loads((shipped_mood_folder() / exports.CARD_NAME).read_bytes())
    honest = card["validation"]["metrics"][card["model"]]["mae"]
    cli("mood", "sample", "--out", tmp_path / "diary.csv")
    proc = cli("mood", "evaluate", "--csv", tmp_path / "diary.csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("warning: this is the diary the model was trained on"), proc.stderr
    assert "in-sample" in proc.stderr and f"validation MAE {honest:.3f}" in proc.stderr
    scored = json.loads(cli("mood", "evaluate", "--csv", tmp_path / "diary.csv", "--json").stdout)
    assert scored["seen_in_training"]["training_diary"] and scored["validation"]["mae"] == honest

    later = generate(60, seed=9, start="2027-03-01")
    later["date"] = later["date"].dt.strftime("%Y-%m-%d")
    later.to_csv(tmp_path / "later.csv", index=False)
    proc = cli("mood", "evaluate", "--csv", tmp_path / "later.csv")
    assert proc.returncode == 0 and "warning" not in proc.stderr and "in-sample" not in proc.stdout, proc.stderr
    overlapping = pd.concat([pd.read_csv(tmp_path / "diary.csv").tail(30), pd.read_csv(tmp_path / "later.csv")])
    overlapping.to_csv(tmp_path / "overlap.csv", index=False)
    scored = json.loads(cli("mood", "evaluate", "--csv", tmp_path / "overlap.csv", "--json").stdout)
    assert scored["seen_in_training"]["days"] == 30 and not scored["seen_in_training"]["training_diary"]
    assert scored["unseen"]["days"] == scored["days"] - 30 and "30 of these" in scored["warning"]


# ---- predict's table, and explain --------------------------------------------------------------------

def test_python_m_huskyai_runs_the_command_and_exits_with_its_code(tmp_path):
    """The entry point, in a process of its own: the command's one line on stderr and its exit code (every other
    test runs the commands in-process, through the same huskyai.cli.main.main)."""
    proc = huskyai_process("predict", "photo.jpg", "--model", tmp_path)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and "no model card" in proc.stderr and proc.stderr.count("\n") == 1


def test_predict_prints_a_header_naming_the_probability(files, cli):
    husky = sorted((SHARED_HUSKIES / "husky").glob("*.jpg"))[0]
    proc = cli("predict", husky, files["cat"])
    assert proc.returncode == 0, proc.stderr
    header, *rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert header == ["file", "label", "P(husky)"]
    by_file = {row[0]: row for row in rows}
    assert by_file[str(husky)][1] == "husky" and float(by_file[str(husky)][2]) > 0.5
    assert by_file[str(files["cat"])][1] == "not_husky" and float(by_file[str(files["cat"])][2]) < 0.5


def test_predict_json_keeps_its_keys(files, cli):
    (answer,) = json.loads(cli("predict", files["cat"], "--json").stdout)
    assert set(answer) == {"file", "label", "probability", "scores"}
    assert answer["probability"] == answer["scores"]["husky"]


def test_explain_is_a_command(files, cli):
    out = files["folder"] / "why.png"
    proc = cli("explain", files["cat"], "--out", out, "--explain-method", "occlusion")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["file\tlabel\tP(husky)\theatmap\tmethod",
                                        f"{files['cat']}\tnot_husky\t0.000\t{out}\tocclusion"]
    assert Image.open(out).size == Image.open(files["cat"]).size


@pytest.mark.slow  # a second occlusion map
def test_explain_writes_heatmap_png_where_it_runs_by_default(files, cli):
    default = cli("explain", files["cat"], "--explain-method", "occlusion", cwd=files["folder"])
    assert default.returncode == 0 and (files["folder"] / "heatmap.png").is_file(), default.stderr


def test_score_says_it_writes_csv_or_parquet(cli):
    listed = cli("--help").stdout
    assert "*.csv" in listed[listed.index("    score"):listed.index("    doctor")]
    assert "*.csv (needs nothing more)" in " ".join(cli("score", "--help").stdout.split())
