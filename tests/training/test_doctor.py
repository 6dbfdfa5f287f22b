"""The label doctor on real fastai features: planted label errors come first, the CLI draws and prints them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import bad_files, make_toy_dataset
from huskyai.errors import DataError
from huskyai.training.doctor import (
    Suspect,
    find_suspects,
    format_table,
    out_of_fold_probabilities,
    save_suspect_sheet,
    suspects_to_drop,
)

SIZE = 96  # at 64 px confident learning flags only the worst of the three on so few photos
PLANTED = ("husky_00.jpg", "husky_05.jpg", "husky_10.jpg")  # cat crops filed under not_husky/


def mislabelled_set(root):
    """skimage cat crops ('husky') and coffee crops, three cats moved into not_husky/."""
    make_toy_dataset(root, n_per_class=14, size=SIZE)
    for name in PLANTED:
        (root / "husky" / name).rename(root / "not_husky" / name)
    return root


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    return mislabelled_set(tmp_path_factory.mktemp("noisy") / "toy")


@pytest.fixture(scope="module")
def suspects(noisy):
    messages = []
    found = find_suspects(noisy, size=SIZE, report=messages.append)
    assert any("28 photos" in m for m in messages) and any("flagged" in m for m in messages)
    return found


@pytest.mark.slow  # reads features with the network (fastai, torch)
def test_planted_label_errors_rank_first(suspects, noisy):
    top = suspects[: len(PLANTED)]
    assert {s.path.name for s in top} == set(PLANTED), [(s.name, s.self_confidence) for s in suspects]
    assert [s.rank for s in suspects] == list(range(1, len(suspects) + 1))
    for s in top:
        assert s.label == "not_husky" and s.suggested == "husky"
        assert s.path == noisy / "not_husky" / s.path.name and s.name == f"toy/not_husky/{s.path.name}"
        assert s.self_confidence < 0.5
    confidences = [s.self_confidence for s in suspects]
    assert confidences == sorted(confidences)  # ranked by self-confidence, lowest first
    assert len(suspects) <= 6  # the clean cats and cups are not all flagged


@pytest.mark.slow  # reads features with the network (fastai, torch)
def test_suspects_to_drop_is_capped_and_keeps_the_ranking(suspects):
    assert suspects_to_drop(suspects, n_photos=28, max_fraction=0.0) == []
    dropped = suspects_to_drop(suspects, n_photos=28, max_fraction=0.1)  # 2 of 28 at most
    assert [s.rank for s in dropped] == [1, 2]
    assert all(isinstance(s, Suspect) for s in dropped)
    with pytest.raises(ValueError, match="max_fraction"):
        suspects_to_drop(suspects, 28, max_fraction=1.5)


@pytest.mark.slow  # imports training's head: torch and timm, seconds
def test_out_of_fold_probabilities_never_see_their_own_photo():
    """A class-0 point among class 1 gets a low p(class 0): its own label never took part in its fit."""
    rng = np.random.default_rng(0)
    y = np.array([0] * 20 + [1] * 20)
    x = rng.normal(size=(40, 5)) + y[:, None] * 3.0
    x[0] += 3.0  # a class-0 point sitting among class 1
    probs = out_of_fold_probabilities(x[None], y, 2, folds=5, c=1.0)
    assert probs.shape == (40, 2) and np.allclose(probs.sum(1), 1)
    assert probs[0, 0] < 0.2 and np.median(probs[1:20, 0]) > 0.8
    # a copy of photo 0 labelled 1: in one group the two share a fold and get one probability
    x2, y2 = np.concatenate([x, x[:1]]), np.append(y, 1)
    groups = [str(i) for i in range(40)] + ["0"]
    for seed in (0, 1, 2):  # without groups these seeds split the copies (checked when this was written)
        grouped = out_of_fold_probabilities(x2[None], y2, 2, folds=5, seed=seed, c=1.0, groups=groups)
        assert np.allclose(grouped[0], grouped[40])
    with pytest.raises(DataError, match="at least 2 photos"):
        out_of_fold_probabilities(x[None, :21], y[:21], 2)


@pytest.mark.slow  # reads features with the network (fastai, torch)
def test_several_folders_and_bad_files(tmp_path):
    """Two folders, one with unreadable files and a manifest: bad files are reported and skipped, names
    carry their folder, and a manifest's fine_class reaches the suspect."""
    first = mislabelled_set(tmp_path / "first")
    second = make_toy_dataset(tmp_path / "second", n_per_class=4, size=SIZE)
    for name, content in bad_files().items():
        (second / "husky" / name).write_bytes(content)
    (first / "MANIFEST.tsv").write_text("file\tlabel\tfine_class\n"
                                        + "".join(f"not_husky/{n}\tnot_husky\ttabby_cat\n" for n in PLANTED))
    messages = []
    found = find_suspects([first, second], size=SIZE, report=messages.append)
    assert any("36 photos" in m and "5 skipped" in m for m in messages), messages
    for name in bad_files():
        assert any(name in m for m in messages), name
    # second/ holds byte-identical copies of four photos of each class in first/: copies share a fold, so a
    # cat that a mislabelled cat pulls towards not_husky may be flagged too; the planted ones always are
    planted = [s for s in found if s.name.startswith("first/not_husky/husky_")]
    assert {s.name for s in planted} == {f"first/not_husky/{n}" for n in PLANTED}, [s.name for s in found]
    assert all(s.fine_class == "tabby_cat" and s.self_confidence < 0.5 for s in planted)
    assert all(s.fine_class is None for s in found if s not in planted)


@pytest.mark.slow  # reads features with the network (fastai, torch)
def test_cli_writes_the_sheet_and_prints_json(noisy, tmp_path, cli):
    sheet = tmp_path / "suspects.png"
    run = cli("doctor", noisy, "--size", SIZE, "--sheet", sheet, "--json")
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)  # stdout is only the JSON: progress went to stderr
    assert {r["path"].rsplit("/", 1)[-1] for r in rows[: len(PLANTED)]} == set(PLANTED)
    assert set(rows[0]) == {"rank", "name", "path", "label", "suggested", "self_confidence", "fine_class",
                            "poison_score"}
    assert all(r["poison_score"] is None for r in rows)  # no poison check unless asked
    assert "flagged" in run.stderr and str(sheet) in run.stderr
    with Image.open(sheet) as img:
        assert img.format == "PNG" and img.width >= 6 * 100
        # the first thumbnail is a cat crop: it is drawn, not left white
        assert np.asarray(img.convert("L"))[40:180, 10:170].std() > 10


@pytest.mark.slow  # reads features with the network (fastai, torch)
def test_table_lists_the_suspects_in_rank_order(suspects):
    lines = format_table(suspects).splitlines()  # what the CLI prints without --json
    assert lines[0].split()[:6] == ["rank", "photo", "given", "suggested", "p(given)", "poison"]
    assert [line.split()[0] for line in lines[1:]] == [str(s.rank) for s in suspects]
    assert {line.split()[1].rsplit("/", 1)[-1] for line in lines[1:1 + len(PLANTED)]} == set(PLANTED)
    assert format_table([]) == "no label issues found"


def test_cli_refuses_a_bad_folder(tmp_path, cli):
    run = cli("doctor", tmp_path / "missing")
    assert run.returncode == 1 and "no such folder" in run.stderr
    assert "Traceback" not in run.stderr


def test_suspect_json_round_trip(tmp_path):
    s = Suspect(1, "d/not_husky/a.jpg", tmp_path / "a.jpg", "not_husky", "husky", 0.0123456789)
    d = s.to_dict()
    assert d["path"] == str(tmp_path / "a.jpg") and d["self_confidence"] == 0.012346
    assert json.loads(json.dumps(d)) == d


@pytest.mark.slow  # poisons a set and reads its features with the network
def test_poison_check_flags_dot_triggered_relabelled_photos(tmp_path):
    """A quarter of the not_husky photos get the red-team kit's purple dot and move to husky/: the doctor's
    spectral-signature check flags them far above chance, in the JSON, the table and the sheet."""
    from huskyai.redteam.poison import poisoned_copy

    clean = make_toy_dataset(tmp_path / "clean", n_per_class=14, size=SIZE)
    (root,), planted = poisoned_copy([clean], tmp_path / "poisoned", fraction=0.25, radius=0.1)
    assert len(planted) == 4
    messages = []
    found = find_suspects(root, size=SIZE, poison_fraction=0.2, report=messages.append)
    flagged = {s.name for s in found if s.poison_score is not None}
    hits = flagged & set(planted)
    precision, recall = len(hits) / max(1, len(flagged)), len(hits) / len(planted)
    print(f"poison check: {len(flagged)} flagged, precision {precision:.2f}, recall {recall:.2f}, "
          f"chance precision {len(planted) / 28:.2f}")
    assert recall >= 0.75 and precision > 2 * len(planted) / 28, (flagged, planted)
    assert any("possibly planted" in m for m in messages)
    assert [s.rank for s in found] == list(range(1, len(found) + 1))
    assert all(s.to_dict()["poison_score"] > 1 for s in found if s.name in hits)  # above its label's median
    assert any(line.split()[-1].endswith("x") for line in format_table(found).splitlines()[1:])
    with Image.open(save_suspect_sheet(found, tmp_path / "sheet.png")) as sheet:
        assert sheet.format == "PNG"
    with pytest.raises(ValueError, match="poison_fraction"):
        find_suspects(root, size=SIZE, poison_fraction=1.5)
