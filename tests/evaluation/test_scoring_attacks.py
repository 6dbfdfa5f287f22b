"""Attacks on bulk scoring (huskyai score), each written as the attack it stops:

- a folder from someone else whose "photos" are symbolic links to secrets (the signing key) or to a folder
  outside it: the secret is never read, so its sha256 cannot reach the results;
- a photo swapped for a link, a FIFO or another folder's file between the scan and the read;
- forged and stale rows planted in the output, which resume used to trust (photos never scored, or
  scored by another model);
- csv output on a serving install, which has no pyarrow.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_scoring import add_refused, make_photos, rows_by_path

from conftest import commands_in_a_process, serving_only_environment
from huskyai.errors import InvalidImageError, NotFollowedError
from huskyai.evaluation.pool import score_file
from huskyai.evaluation.score import ANOTHER_MODEL, CHANGED, DUPLICATED, MALFORMED, REFUSED, find_photos, score
from huskyai.images.decode import read_limited

LINK_REFUSED = "a symbolic link, not followed"


def plant_key(home: Path) -> tuple[Path, str]:
    """A signing key where huskyai keeps one (under XDG_CONFIG_HOME), and the sha256 an attacker wants."""
    key = home / "huskyai" / "signing.key"
    key.parent.mkdir(parents=True)
    key.write_text(secrets.token_hex(32))
    key.chmod(0o600)
    return key, hashlib.sha256(key.read_bytes()).hexdigest()


def hostile_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder of photos from someone else: two real photos, "signing.jpg" linking to this machine's key,
    "album" linking to a private folder outside it, and a loop. Returns it and the sha256 of each secret."""
    folder = tmp_path / "download"
    make_photos(folder, n=2)
    key, key_sha = plant_key(tmp_path / "config")
    private = tmp_path / "private"
    private.mkdir()
    Image.fromarray(np.full((120, 160, 3), (30, 90, 200), np.uint8)).save(private / "holiday.jpg")
    (private / "secret.png").write_text("my bank PIN is 1234")
    (folder / "signing.jpg").symlink_to(key)
    (folder / "key").symlink_to(key)  # not named like a photo: not even listed
    (folder / "album").symlink_to(private, target_is_directory=True)
    (folder / "sub" / "loop").symlink_to(folder, target_is_directory=True)
    secrets_sha = {"key": key_sha, **{p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in private.iterdir()}}
    return folder, secrets_sha


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_links_out_of_the_folder_are_never_read(tmp_path, suffix, cli):
    folder, secret_sha = hostile_folder(tmp_path)
    out = tmp_path / f"results.{suffix}"
    proc = cli("score", folder, "--out", out, "--workers", "0", "--no-progress",
               env={"XDG_CONFIG_HOME": str(tmp_path / "config")})
    assert proc.returncode == 0, proc.stderr
    rows = rows_by_path(out) if suffix == "parquet" else {
        line.split(",")[0]: line for line in out.read_text().splitlines()[1:]}
    everything = out.read_bytes().decode("latin-1") + proc.stdout + proc.stderr + repr(rows)
    for name, sha in secret_sha.items():
        assert sha not in everything, f"the sha256 of {name} leaked into the results"
    assert sorted(Path(p).name for p in rows) == ["photo0.jpg", "photo1.png", "signing.jpg"]
    link_row = rows[str(folder / "signing.jpg")]
    if suffix == "parquet":
        assert link_row["sha256"] is None and link_row["label"] is None and LINK_REFUSED in link_row["error"]
    else:
        assert f",,,,\"signing.jpg: {LINK_REFUSED}" in link_row
    assert f"skipped {folder / 'album'}: a symbolic link to a folder, not followed" in proc.stderr
    assert f"skipped {folder / 'sub' / 'loop'}: a symbolic link to a folder" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_globs_and_lists_do_not_follow_links_either(tmp_path):
    folder, secret_sha = hostile_folder(tmp_path)
    lines: list[str] = []
    # a wildcard folder component would enter the linked folder; ** never does
    globbed = find_photos(str(folder / "*" / "*.jpg"), lines.append) + find_photos(str(folder / "**" / "*"),
                                                                                   lines.append)
    assert "holiday.jpg" not in {Path(p.path).name for p in globbed}
    assert any(f"skipped {folder / 'album'}: a symbolic link to a folder, not followed" in line for line in lines)
    assert f"skipped {folder / 'sub' / 'loop'}: a symbolic link to a folder, not followed" in lines[-1]
    listing = folder / "photos.txt"  # a list that names the link and, through the linked folder, a private photo
    listing.write_text("photo1.png\nsigning.jpg\nalbum/holiday.jpg\n" + str(tmp_path / "config/huskyai/signing.key"))
    listed = {Path(p.path).name: p for p in find_photos(listing, lines.append)}
    assert sorted(listed) == ["photo1.png", "signing.jpg", "signing.key"]
    assert f"reached through {folder / 'album'}, a symbolic link to a folder, not followed" in lines[-1]
    assert LINK_REFUSED in listed["signing.jpg"].refusal
    assert "not named like a photo" in listed["signing.key"].refusal  # a list names photos; the key is not read
    out = tmp_path / "r.parquet"
    score([listing, str(folder / "**" / "*")], out, workers=0, progress=False, report=lines.append)
    rows = rows_by_path(out)
    assert secret_sha["key"] not in repr(rows) and secret_sha["secret.png"] not in repr(rows)
    assert secret_sha["holiday.jpg"] not in repr(rows)
    assert rows[str(folder / "photo1.png")]["label"] is not None
    assert rows[str(folder / "signing.jpg")]["sha256"] is None and LINK_REFUSED in rows[str(folder / "signing.jpg")][
        "error"]


def test_a_photo_swapped_after_the_scan_is_not_read(tmp_path, shipped):
    folder = tmp_path / "p"
    make_photos(folder, n=5)  # photo0.jpg and photo3.png in sub/
    key, key_sha = plant_key(tmp_path / "config")
    photos = {Path(p.path).name: p for p in find_photos(folder)}
    # 1. the photo itself becomes a link to the key: O_NOFOLLOW refuses to open it
    target = Path(photos["photo1.png"].path)
    target.unlink()
    target.symlink_to(key)
    with pytest.raises(NotFollowedError):
        read_limited(target, identity=photos["photo1.png"].identity)
    # 2. its folder becomes a link to a folder holding a file of the same name: not the file the scan found
    sub = folder / "sub"
    decoy = tmp_path / "decoy"
    shutil.copytree(sub, decoy)
    shutil.rmtree(sub)
    sub.symlink_to(decoy, target_is_directory=True)
    with pytest.raises(InvalidImageError, match="replaced since the folder was scanned"):
        read_limited(photos["photo0.jpg"].path, identity=photos["photo0.jpg"].identity)
    # 3. a FIFO in a photo's place: refused at once (a blocking open would hang the worker for ever)
    fifo = Path(photos["photo2.jpg"].path)
    fifo.unlink()
    os.mkfifo(fifo)
    with pytest.raises(InvalidImageError, match="not a regular file"):
        read_limited(fifo)
    rows = [score_file(shipped, photos[name]) for name in ("photo0.jpg", "photo1.png", "photo2.jpg", "photo4.jpg")]
    assert [r["sha256"] is None and r["label"] is None for r in rows] == [True, True, True, False]  # one untouched
    assert key_sha not in repr(rows)


def forge(out: Path, rows: dict[str, dict], changes: dict[str, dict], extra: list[dict]) -> None:
    """Rewrite ``out`` with some rows changed and some added, as an attacker (or an older run) would."""
    forged = [r | changes.get(Path(p).name, {}) for p, r in rows.items()] + extra
    pq.write_table(pa.Table.from_pylist(forged, schema=pq.read_schema(out)), out)


def test_resume_rescores_forged_and_stale_rows(tmp_path, shipped):
    folder = tmp_path / "p"
    good = make_photos(folder, n=6)
    refused = add_refused(folder)
    out = tmp_path / "results.parquet"
    score(folder, out, shipped, workers=0, progress=False)
    honest = rows_by_path(out)
    by_name = {Path(p).name: r for p, r in honest.items()}
    husky = shipped.positive
    changes = {
        # right path, model and file hash, but a label that disagrees with the probability: forged
        "photo0.jpg": {"label": husky if by_name["photo0.jpg"]["label"] != husky else "not_husky"},
        # an older run with another model: stale
        "photo1.png": {"model_sha256": "ab" * 32},
        # a score for other bytes than the file holds now (an old version of the photo, or a made-up hash)
        "photo2.jpg": {"sha256": "cd" * 32, "label": husky, "positive_probability": 0.99},
        # a refusal planted for a good photo, so that it is never scored
        "photo3.png": {"label": None, "positive_probability": None, "error": "photo3.png: the file is empty"},
        # a row that no run writes: a probability out of range
        "photo4.jpg": {"positive_probability": 7.0},
    }
    duplicate = by_name["photo5.png"] | {"label": husky, "positive_probability": 1.0}  # a second row for a photo
    forge(out, honest, changes, [duplicate])
    lines: list[str] = []
    again = score(folder, out, shipped, workers=0, progress=False, report=lines.append)
    assert again.rescored == {MALFORMED: 2, ANOTHER_MODEL: 1, CHANGED: 1, REFUSED: 3, DUPLICATED: 2}
    assert again.skipped == 0 and again.scored == len(good) + len(refused)
    assert len(lines) == 1 and "9 rows already there are not reused" in lines[0] and "1 of another model" in lines[0]
    table = pq.read_table(out)
    assert table.num_rows == len(good) + len(refused)  # each photo once: the fresh row
    assert rows_by_path(out) == honest
    # and a resume on the honest file reuses every score (the two refusals are tried again, as always)
    assert score(folder, out, shipped, workers=0, progress=False).skipped == len(good)


def test_resume_of_a_csv_with_forged_rows_through_the_command(tmp_path, cli):
    folder = tmp_path / "p"
    make_photos(folder, n=2)
    out = tmp_path / "results.csv"
    command = ["score", folder, "--out", out, "--workers", "0", "--no-progress"]
    assert cli(*command).returncode == 0
    honest = out.read_text()
    header, first, second = honest.splitlines()
    stale = first.replace(first.rsplit(",", 1)[1], "ef" * 32)  # the same photo, "scored" by another model
    flipped = second.replace(",husky,", ",not_husky,") if ",husky," in second else second.replace(",not_husky,",
                                                                                                   ",husky,")
    out.write_text("\n".join([header, stale, flipped, flipped]) + "\n")
    proc = cli(*command)
    assert proc.returncode == 0, proc.stderr
    assert "3 rows already there are not reused" in proc.stderr and "1 of another model" in proc.stderr
    assert "2 photos scored (0 refused, with their error), 0 already there" in proc.stdout
    assert out.read_text() == honest


@pytest.mark.slow  # a pool of one worker, started from a serving install's process
def test_csv_output_needs_no_pyarrow(tmp_path):
    env = serving_only_environment(tmp_path / "site")
    check = subprocess.run([sys.executable, "-c", "import pyarrow"], capture_output=True, text=True, env=env)
    assert "a serving install has none" in check.stderr  # the environment really lacks it
    photos = make_photos(tmp_path / "p", n=2)
    out = tmp_path / "results.csv"
    proc, parquet = commands_in_a_process(
        [(["score", tmp_path / "p", "--out", out, "--workers", "1", "--no-progress"], tmp_path),
         (["score", tmp_path / "p", "--out", tmp_path / "r.parquet", "--workers", "0"], tmp_path)], env)
    assert proc.returncode == 0, proc.stderr
    assert "2 photos scored (0 refused" in proc.stdout
    assert sorted(line.split(",")[0] for line in out.read_text().splitlines()[1:]) == sorted(map(str, photos))
    proc = parquet
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: huskyai score --out *.parquet needs pyarrow, which is not installed: pip install 'huskyai[score]' "
        "(in a clone: pip install -r requirements-dev.txt); or name the file *.csv, which needs only pandas"]
