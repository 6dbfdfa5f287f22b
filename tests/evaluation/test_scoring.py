"""Batch scoring (huskyai.evaluation.score): sources, the parquet rows, refused photos, resume, the process pool
(its workers verified and torch-free) and, marked slow, the same scorer on a local Ray."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import EXPORT, bad_files, python_env
from huskyai import IntegrityError
from huskyai.cli.main import main
from huskyai.errors import ScoreError
from huskyai.evaluation.pool import LocalPool
from huskyai.evaluation.score import REFUSED, list_photos, score

HEAVY = "[m for m in ('torch', 'fastai', 'timm') if m in __import__('sys').modules]"


def make_photos(folder: Path, n: int = 6) -> list[Path]:
    """Noise and gradients of several sizes, as JPEG and PNG, in folder and a sub-folder."""
    rng = np.random.default_rng(13)
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = 96 + 40 * i, 160 + 17 * i
        if i % 2:
            arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        else:
            ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
            arr = (ramp * rng.random(3, dtype=np.float32)).astype(np.uint8)
        path = folder / ("sub" if i % 3 == 0 else ".") / f"photo{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def add_refused(folder: Path) -> list[Path]:
    """A truncated JPEG and a text file named .jpg."""
    files = bad_files()
    out = []
    for name in ("truncated.jpg", "text.jpg"):
        (folder / name).write_bytes(files[name])
        out.append(folder / name)
    return out


def rows_by_path(out: Path) -> dict[str, dict]:
    return {r["path"]: r for r in pq.read_table(out).to_pylist()}


def check_rows(rows: dict[str, dict], model, good: list[Path], refused: list[Path]) -> None:
    """Good photos: predict_batch's labels and probabilities (1e-6); refused ones: an error, no score."""
    assert set(rows) == {str(p) for p in good + refused}
    expected = model.predict_batch(good)
    for path, p in zip(good, expected):
        row = rows[str(path)]
        assert row["label"] == p.label and row["error"] is None
        assert abs(row["positive_probability"] - p.positive_probability) < 1e-6
    for path in refused:
        row = rows[str(path)]
        assert row["label"] is None and row["positive_probability"] is None
        assert path.name in row["error"]
    assert {r["model_sha256"] for r in rows.values()} == {model.model_sha256}


def test_sources_folder_glob_list_and_single_file(tmp_path):
    photos = make_photos(tmp_path / "p")
    (tmp_path / "p" / "notes.txt").write_text("not a photo")
    assert list_photos(tmp_path / "p") == sorted(str(p) for p in photos)  # recursive, image files only
    assert list_photos(str(tmp_path / "p" / "**" / "*.png")) == sorted(str(p) for p in photos if p.suffix == ".png")
    assert list_photos(photos[0]) == [str(photos[0])]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two photos\np/{photos[1].name}\n\n{photos[0]}\np/{photos[1].name}\n")
    assert list_photos(listing) == [str(photos[1]), str(photos[0])]  # relative to the list, once each
    with pytest.raises(ScoreError, match="no such folder"):
        list_photos(tmp_path / "nothing*")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScoreError, match="no image files"):
        list_photos(tmp_path / "empty")


def test_pool_matches_predict_batch_and_refused_photos_give_error_rows(tmp_path, shipped):
    good = make_photos(tmp_path / "p")
    refused = add_refused(tmp_path / "p")
    out = tmp_path / "results.parquet"
    summary = score(tmp_path / "p", out, shipped, workers=2, progress=False)
    assert (summary.scored, summary.refused, summary.skipped) == (len(good) + 2, 2, 0)
    check_rows(rows_by_path(out), shipped, good, refused)
    table = pq.read_table(out)
    assert table.schema.field("positive_probability").type == pa.float64()
    for path in good:  # sha256 of the file's bytes
        assert rows_by_path(out)[str(path)]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow  # starts a second pool
def test_pool_workers_never_import_torch_and_refuse_a_model_swapped_after_the_parent_loaded_it(tmp_path, shipped):
    import huskyai

    photo = make_photos(tmp_path / "p", n=1)[0]
    export = tmp_path / "export"
    shutil.copytree(EXPORT, export)
    model = huskyai.load(export, sha256=shipped.model_sha256)
    with LocalPool(model, 1) as pool:
        rows = [r for chunk in pool.map([str(photo)]) for r in chunk]
        assert pool.executor.submit(eval, HEAVY).result() == []  # in the worker
    code = (f"from huskyai.evaluation.score import score\n"
            f"score({str(photo)!r}, {str(tmp_path / 'p.parquet')!r}, workers=1)\n"
            f"print({HEAVY})")  # and in the parent, from a fresh interpreter
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=python_env(), timeout=300)
    assert proc.stdout.splitlines()[-1:] == ["[]"], proc.stdout + proc.stderr
    assert rows[0]["label"] == shipped.predict(photo).label
    graph = export / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 1
    graph.write_bytes(bytes(data))  # the parent's model is already loaded; a new worker reads this file
    with pytest.raises(IntegrityError, match="model.onnx"):
        score(photo, tmp_path / "out.parquet", model, workers=1, progress=False)
    assert not (tmp_path / "out.parquet").exists()


def test_resume_skips_scored_photos_and_adds_new_ones(tmp_path, shipped):
    good = make_photos(tmp_path / "p", n=3)
    refused = add_refused(tmp_path / "p")
    out = tmp_path / "results.parquet"
    first = score(tmp_path / "p", out, shipped, workers=0, progress=False)
    assert first.scored == 5
    before, mtime = out.read_bytes(), out.stat().st_mtime_ns
    again = score(tmp_path / "p", out, shipped, workers=0, progress=False)
    # the 3 scores are checked against their files and kept; the 2 refusals are tried again (only decoding
    # can check one) and refused again: nothing new, so the file is not even rewritten
    assert (again.scored, again.refused, again.skipped) == (2, 2, 3)
    assert again.rescored == {REFUSED: 2}
    assert out.read_bytes() == before and out.stat().st_mtime_ns == mtime
    old_rows = rows_by_path(out)
    new = tmp_path / "p" / "sub" / "new.png"
    Image.fromarray(np.full((64, 80, 3), 200, np.uint8)).save(new)
    third = score(tmp_path / "p", out, shipped, workers=0, progress=False)
    assert (third.scored - third.refused, third.skipped) == (1, 3)
    rows = rows_by_path(out)
    assert {k: v for k, v in rows.items() if k != str(new)} == old_rows
    check_rows(rows, shipped, good + [new], refused)


def test_output_of_another_model_or_not_a_results_file_is_refused(tmp_path, shipped):
    photo, other = make_photos(tmp_path / "p", n=2)
    out = tmp_path / "results.parquet"
    score(photo, out, shipped, workers=0, progress=False)
    table = pq.read_table(out)
    pq.write_table(table.set_column(5, "model_sha256", pa.array(["ab" * 32])), out)
    before = out.read_bytes()
    # rows of another model for photos this run does not score cannot be redone here: the file is refused
    # rather than left mixing two models (rows of this run's own photos are scored again: test_scoring_attacks)
    with pytest.raises(ScoreError, match="another model"):
        score(other, out, shipped, workers=0, progress=False)
    assert out.read_bytes() == before
    out.write_text("path,label\n")
    with pytest.raises(ScoreError, match="not a parquet file"):
        score(photo, out, shipped, workers=0, progress=False)
    (tmp_path / "results.csv").write_text("path,label\n")
    with pytest.raises(ScoreError, match="not a results file"):
        score(photo, tmp_path / "results.csv", shipped, workers=0, progress=False)
    with pytest.raises(ScoreError, match="existing folder"):
        score(photo, tmp_path / "no" / "results.parquet", shipped, workers=0, progress=False)
    with pytest.raises(ScoreError, match=r"name the file \*\.parquet or \*\.csv"):
        score(photo, tmp_path / "results.txt", shipped, workers=0, progress=False)
    assert not (tmp_path / "results.txt").exists()


def test_csv_output_holds_the_same_rows_as_parquet_and_resumes(tmp_path, shipped):
    good = make_photos(tmp_path / "p", n=3)
    refused = add_refused(tmp_path / "p")
    score(tmp_path / "p", tmp_path / "r.parquet", shipped, workers=0, progress=False)
    first = score(tmp_path / "p", tmp_path / "r.csv", shipped, workers=0, progress=False)
    assert (first.scored, first.refused) == (5, 2)
    frame = pd.read_csv(tmp_path / "r.csv")  # as a person reads it
    by_path = {r["path"]: r for r in frame.astype(object).where(frame.notna(), None).to_dict("records")}
    check_rows(by_path, shipped, good, refused)
    assert by_path == rows_by_path(tmp_path / "r.parquet")  # the same rows; probabilities survive the text exactly
    again = score(tmp_path / "p", tmp_path / "r.csv", shipped, workers=0, progress=False)
    assert (again.skipped, again.rescored) == (3, {REFUSED: 2})


def test_run_score_cli_glue(tmp_path, capsys):
    photos = make_photos(tmp_path / "p", n=2)
    add_refused(tmp_path / "p")
    out = tmp_path / "r.parquet"
    # several sources, as a shell expands an unquoted glob; a photo named twice is scored once
    argv = ["score", str(photos[0]), str(tmp_path / "p"), "--out", str(out), "--workers", "0", "--no-progress"]
    assert main(argv) == 0
    assert "4 photos scored (2 refused" in capsys.readouterr().out
    assert pq.read_table(out).num_rows == 4
    assert main(["score", str(tmp_path / "missing"), "--out", str(out)]) == 1
    assert "error: " in capsys.readouterr().err
    assert main(["score", str(tmp_path / "p"), "--out", str(out), "--ray", "--workers", "0"]) == 1
    assert "--workers 0" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_matches_predict_batch_and_resumes(tmp_path, shipped):
    pytest.importorskip("ray")
    good = make_photos(tmp_path / "p")
    refused = add_refused(tmp_path / "p")
    out = tmp_path / "ray.parquet"
    done = score(tmp_path / "p", out, shipped, workers=2, use_ray=True, progress=False)
    assert (done.scored, done.refused) == (len(good) + 2, 2)
    check_rows(rows_by_path(out), shipped, good, refused)
    again = score(tmp_path / "p", out, shipped, use_ray=True, progress=False)
    assert (again.scored, again.refused, again.skipped) == (2, 2, len(good))  # refusals are tried again
    check_rows(rows_by_path(out), shipped, good, refused)
