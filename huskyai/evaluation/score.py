"""Batch scoring: many photos into one parquet or csv file, on every core or on a Ray cluster, resumable.

    from huskyai import score
    score("photos/", "results.parquet")                  # a process per core, one ONNX Runtime thread each
    score("photos/", "results.csv")                      # the same rows as csv (needs no pyarrow)
    score("photos/", "results.parquet", use_ray=True)    # the same scorer on Ray Data (pip install 'huskyai[ray]')

One row per photo: ``path``, ``sha256`` of its bytes, ``label``, ``positive_probability`` (P(husky)),
``error`` (why the photo was refused, else null) and ``model_sha256`` (the card that scored it).

Photos are found by the one folder scan (huskyai.images.folders), which follows no symbolic link: a link
inside a folder is never read (a link named like a photo gets a row saying so, a linked folder a warning
line), and every photo is read through O_NOFOLLOW from the very file the scan found
(huskyai.images.decode.read_limited). Otherwise a folder from someone else could point a "photo" at a
secret, such as the signing key, and put its sha256 in the results.

Resume: a photo is skipped only if its row in the output is one this run would write again: well-formed,
scored by the model now loaded, for the file's current bytes (hashed again: a size and mtime check can be
forged in the row, a hash of the file cannot), with a label that agrees with its probability. Any other row
of a photo of this run is dropped and the photo scored again (a refusal is tried again, since it can only be
checked by decoding), so each photo ends with exactly one row. The file is rewritten atomically every
minute and at the end, and never mixes rows of two models.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import re
import stat
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from huskyai.errors import InvalidImageError, MissingExtraError, ScoreError
from huskyai.evaluation.pool import COLUMNS, LocalPool, Row, cpu_count, result_schema, score_file
from huskyai.extras import require
from huskyai.images.decode import read_limited
from huskyai.images.folders import IMAGE_SUFFIXES, Photo, photo_entry, photo_name, walk
from huskyai.inference.predictor import Predictor, load

OUTPUT_SUFFIXES = (".parquet", ".csv")
CHECKPOINT_SECONDS = 60.0
Source = str | os.PathLike | Iterable[str | os.PathLike]
Report = Callable[[str], None]
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run as a formula

# why a row already in the output is not reused (the photo is scored again)
ANOTHER_MODEL = "of another model"
MALFORMED = "not well-formed"
DUPLICATED = "duplicated"
CHANGED = "whose photo changed"
REFUSED = "refused before (a refusal is checked only by trying again)"


@dataclass(frozen=True)
class ScoreSummary:
    out: Path
    scored: int  # photos scored in this run, refused ones included
    refused: int  # of those, photos that gave an error row
    skipped: int  # photos whose row in the output was checked and kept
    seconds: float  # wall time of this run's scoring (workers' start included)
    model_sha256: str
    rescored: dict[str, int] = field(default_factory=dict)  # rows already in the output not reused, by reason

    @property
    def photos_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


# ---- finding the photos ---------------------------------------------------------------------------

def find_photos(source: str | os.PathLike, report: Report = _to_stderr) -> list[Photo]:
    """The photos ``source`` names: a folder (files named like photos in it, recursively), one image file,
    a text file of paths (one a line, relative to the file's folder; # comments), or a glob.

    Nothing is read here (only listed and lstat-ed). Symbolic links below the folder or the glob's fixed
    part are never followed: a link named like a photo comes back with its refusal, a linked folder is
    reported and left out. Names a results file cannot hold (not UTF-8) are reported and left out."""
    path = Path(source)
    if path.is_dir():  # the folder the user named is theirs to name, even through a link; nothing below it is
        found = walk(path.absolute(), report)
        if not found:
            raise ScoreError(f"{source}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return found
    if os.path.lexists(path):
        if path.is_file() and not photo_name(str(path)):
            return _read_list(path, report)
        found = [photo] if (photo := photo_entry(os.path.abspath(path), report, named=True)) else []
    else:
        found = _glob(str(source), report)
    if not found:
        raise ScoreError(f"{source}: no such folder or file, and no file matches it as a glob")
    return found


def list_photos(source: str | os.PathLike, report: Report = _to_stderr) -> list[str]:
    """The absolute paths of :func:`find_photos`."""
    return [p.path for p in find_photos(source, report)]


def _glob(pattern: str, report: Report) -> list[Photo]:
    """The files a glob matches. Below the pattern's fixed part (the folders before its first wildcard)
    no linked folder is entered: pathlib's ``**`` never enters one, and a match reached through one
    (``photos/*/x.jpg``) is reported and left out."""
    parts = Path(pattern).parts
    magic = next((i for i, part in enumerate(parts) if glob.escape(part) != part), None)
    if magic is None:  # no wildcard, and nothing there
        return []
    root = Path(*parts[:magic]) if magic else Path(".")
    links: dict[Path, bool] = {}
    found, reported = [], set()
    for match in sorted(root.glob(str(Path(*parts[magic:])))):
        folder = _linked_folder(root, match, links)
        if folder is not None:
            if folder not in reported:
                reported.add(folder)
                report(f"skipped {folder.absolute()}: a symbolic link to a folder, not followed "
                       f"(name the folder itself to score it)")
            continue
        if photo := photo_entry(os.path.abspath(match), report, named=True):
            found.append(photo)
    return found


def _linked_folder(root: Path, match: Path, links: dict[Path, bool]) -> Path | None:
    """The first folder between ``root`` and ``match`` that is a symbolic link, else None."""
    folder = root
    for part in match.relative_to(root).parts[:-1]:
        folder = folder / part
        if folder not in links:
            links[folder] = folder.is_symlink()
        if links[folder]:
            return folder
    return None


def _read_list(path: Path, report: Report) -> list[Photo]:
    """The photos a text file names; an entry below the list's folder is not reached through a linked folder."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, OSError) as err:
        raise ScoreError(f"{path}: not a text file of photo paths ({err})") from None
    names = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not names:
        raise ScoreError(f"{path}: the list of photos is empty")
    root = Path(os.path.abspath(path.parent))
    links: dict[Path, bool] = {}
    found = []
    for entry in dict.fromkeys(os.path.abspath(root / name) for name in names):  # once each, in order
        # below the list's folder, as in a folder scan, no linked folder is entered
        folder = _linked_folder(root, Path(entry), links) if Path(entry).is_relative_to(root) else None
        if folder is not None:
            report(f"skipped {entry}: reached through {folder}, a symbolic link to a folder, not followed")
        elif photo := photo_entry(entry, report, named=True):
            found.append(photo)
    return found


# ---- the results file -----------------------------------------------------------------------------

def read_results(out: Path) -> list[Row]:
    """The rows already in ``out`` (parquet or csv by its suffix), [] if there is none. The file is read
    without following a link; ScoreError if it is not a results file of huskyai score."""
    try:
        fd = os.open(out, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return []
    except OSError as err:
        raise ScoreError(f"{out}: cannot be read safely ({err.strerror}; results are never read or written "
                         f"through a symbolic link): choose another --out") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ScoreError(f"{out}: not a regular file; choose another --out")
        columns, rows = _read_parquet(out, f) if out.suffix.lower() == ".parquet" else _read_csv(out, f)
    if missing := [c for c in COLUMNS if c not in columns]:
        raise ScoreError(f"{out}: not a results file of huskyai score (no column {', '.join(missing)})")
    return [{c: row[c] for c in COLUMNS} for row in rows]


def _read_parquet(out: Path, f: BinaryIO) -> tuple[list[str], list[Row]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(f)
    except (pa.ArrowException, OSError) as err:
        raise ScoreError(f"{out}: exists and is not a parquet file ({err}); choose another --out") from None
    return table.column_names, table.to_pylist()


def _read_csv(out: Path, f: BinaryIO) -> tuple[list[str], list[Row]]:
    import pandas as pd

    try:
        frame = pd.read_csv(f, dtype=str, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise ScoreError(f"{out}: exists and is not a csv file of results ({err}); choose another --out") from None
    rows = [{k: _from_csv(k, v) for k, v in row.items()} for row in frame.to_dict("records")]
    return [str(c) for c in frame.columns], rows


def _from_csv(column: str, text: str) -> object:
    """A csv cell as the row holds it: "" is null, the probability a float (a cell that is not a number
    stays text, and the row is then not well-formed), and a formula guard written by _to_csv removed."""
    if text == "":
        return None
    if column == "positive_probability":
        try:
            return float(text)
        except ValueError:
            return text
    return text[1:] if text.startswith("'") and text[1:2] in _FORMULA_START else text


def _to_csv(value: object) -> object:
    """A spreadsheet runs a cell that starts with "=" as a formula; an error row quotes a file name,
    which a folder from someone else chooses. Such cells get a leading "'", as spreadsheets expect."""
    return f"'{value}" if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def write_results(out: Path, rows: list[Row]) -> None:
    """``rows``, sorted by path, written to a new temporary file in ``out``'s folder (created exclusively,
    so no planted link is followed), synced, then renamed over ``out``: a reader or a crash never sees half
    a file, and a link at ``out`` is replaced, never written through."""
    rows = sorted(rows, key=lambda r: r["path"])
    if out.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=result_schema()), sink)
        data = sink.getvalue()
    else:
        import pandas as pd

        frame = pd.DataFrame.from_records([{c: _to_csv(r[c]) for c in COLUMNS} for r in rows], columns=COLUMNS)
        data = frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)


def row_problem(row: Row, model: Predictor) -> str | None:
    """None if ``row`` is a row ``model`` could have written, else why not (ANOTHER_MODEL or MALFORMED)."""
    model_sha = row.get("model_sha256")
    if not isinstance(model_sha, str) or not _HEX64.fullmatch(model_sha):
        return MALFORMED
    if model_sha != model.model_sha256:
        return ANOTHER_MODEL
    path, sha, label, p, error = (row.get(c) for c in ("path", "sha256", "label", "positive_probability", "error"))
    if not isinstance(path, str) or not os.path.isabs(path) or not (sha is None or isinstance(sha, str)
                                                                   and _HEX64.fullmatch(sha)):
        return MALFORMED
    if error is not None:  # a refusal: no score
        return None if isinstance(error, str) and error and label is None and p is None else MALFORMED
    if sha is None or label not in model.classes or not isinstance(p, float) or not 0.0 <= p <= 1.0:
        return MALFORMED  # (NaN is not between 0 and 1)
    # the label must agree with its own probability: with two classes, the card's threshold decides; with
    # more, the positive class wins at least whenever it holds more than half of the probability
    if len(model.classes) == 2 and (label == model.positive) != (p >= model.threshold):
        return MALFORMED
    if len(model.classes) > 2 and label != model.positive and p > 0.5:
        return MALFORMED
    return None


def _reuse(rows: list[Row], photo: Photo, model: Predictor) -> str | None:
    """None if the one row ``rows`` of ``photo`` can stay as it is, else why it cannot."""
    if len(rows) > 1:
        return DUPLICATED
    row = rows[0]
    if problem := row_problem(row, model):
        return problem
    if photo.refusal is not None:  # refused without reading: the row must say exactly that
        return None if (row["sha256"], row["error"]) == (None, photo.refusal) else CHANGED
    if row["error"] is not None and row["sha256"] is not None:
        return REFUSED
    try:
        data = read_limited(photo.path, identity=photo.identity)
        now: tuple[str | None, str | None] = (hashlib.sha256(data).hexdigest(), None)
    except InvalidImageError as err:
        now = (None, str(err))
    if row["sha256"] is None:  # refused when read: it must still be refused in the same words
        return None if now == (None, row["error"]) else CHANGED
    return None if now[0] == row["sha256"] else CHANGED


@dataclass
class ResumePlan:
    keep: list[Row]  # rows staying in the output as they are
    todo: list[Photo]  # photos to score
    rescored: Counter  # rows already in the output that are not reused, by reason
    skipped: int  # photos of this run whose row is kept


def plan_resume(photos: list[Photo], old: list[Row], model: Predictor, out: Path,
                progress: bool = False) -> ResumePlan:
    """What to keep from ``old`` and what to score. Rows of photos outside this run are kept only if this
    model could have written them (otherwise ScoreError: they cannot be scored again here, and the file
    must not mix models); rows of this run's photos are checked by :func:`_reuse`."""
    from tqdm import tqdm

    by_path: dict[object, list[Row]] = {}
    for row in old:
        path = row["path"]
        by_path.setdefault(path if isinstance(path, str) else repr(path), []).append(row)
    ours = {p.path for p in photos}
    keep: list[Row] = []
    for path, rows in by_path.items():
        if path in ours:
            continue
        problem = DUPLICATED if len(rows) > 1 else row_problem(rows[0], model)
        if problem == ANOTHER_MODEL:
            raise ScoreError(f"{out}: holds rows scored by another model (card sha256 "
                             f"{str(rows[0]['model_sha256'])[:16]}...) for photos this run does not score, such as "
                             f"{path}: write to another --out, or name those photos too")
        if problem:
            raise ScoreError(f"{out}: its row for {path} is {problem}, and that photo is not in this run: "
                             f"write to another --out, or name that photo too")
        keep += rows
    rescored: Counter = Counter()
    skipped = 0
    checks = [p for p in photos if p.path in by_path]
    for photo in tqdm(checks, unit="photo", desc="checking rows", disable=not progress or len(checks) < 1000,
                      file=sys.stderr):
        reason = _reuse(by_path[photo.path], photo, model)
        if reason is None:
            keep += by_path[photo.path]
            skipped += 1
        else:
            rescored[reason] += len(by_path[photo.path])
    kept = {r["path"] for r in keep}
    todo = [p for p in photos if p.path not in kept]
    return ResumePlan(keep, todo, rescored, skipped)


# ---- scoring --------------------------------------------------------------------------------------

def _backend(model: Predictor, workers: int | None, use_ray: bool, ray_address: str | None):
    """What scores the photos: Ray actors, a local process pool, or (workers=0) this process."""
    if use_ray or ray_address:
        require("ray", "huskyai score --ray")
        from huskyai.evaluation.on_ray import RayPool

        return RayPool(model, workers, ray_address)
    workers = cpu_count() if workers is None else workers
    return LocalPool(model, workers) if workers > 0 else _InProcess(model)


class _InProcess:
    """workers=0: no pool, this process's model (for small jobs and debugging)."""

    def __init__(self, model: Predictor):
        self.model = model

    def map(self, photos: list[Photo]) -> Iterator[list[Row]]:
        return ([score_file(self.model, p)] for p in photos)

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def score(source: Source, out: str | os.PathLike, model: Predictor | str | os.PathLike | None = None,
          *, workers: int | None = None, use_ray: bool = False, ray_address: str | None = None,
          sha256: str | None = None, trust_unsigned: bool = False, progress: bool = True,
          report: Report = _to_stderr) -> ScoreSummary:
    """Score every photo of ``source`` that has no reusable row in ``out`` and write ``out`` with one row
    per photo (``*.parquet``, which needs the "score" extra, or ``*.csv``, which needs only pandas).

    ``source``: a folder, an image file, a text file of paths or a glob (see :func:`find_photos`), or a
    list of them.

    ``model``: a loaded Predictor, an export folder or the shipped model's name (default: the shipped
    model); ``sha256``/``trust_unsigned`` as in :func:`huskyai.load`. ``workers``: processes (default:
    one per core; 0 scores in this process), or Ray actors with ``use_ray`` or ``ray_address``
    (default: one per CPU of the cluster). ``progress``: a progress bar on stderr. ``report``: where
    the lines about skipped links and rows scored again go (default: stderr).
    """
    if workers is not None and (workers < 0 or workers == 0 and (use_ray or ray_address)):
        raise ScoreError(f"--workers {workers}: give at least 1 (0 means this process only, without Ray)")
    out = _output_path(out)
    model = model if isinstance(model, Predictor) else load(model, engine="onnx", sha256=sha256,
                                                            trust_unsigned=trust_unsigned)
    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    photos = list({p.path: p for s in sources for p in find_photos(s, report)}.values())  # each photo once
    old = read_results(out)
    resume = plan_resume(photos, old, model, out, progress)
    if resume.rescored:
        report(f"{out}: {sum(resume.rescored.values())} rows already there are not reused, their photos are scored "
               f"again: " + ", ".join(f"{n} {why}" for why, n in resume.rescored.items()))
    start = time.perf_counter()
    backend = _backend(model, workers, use_ray, ray_address)
    rows = _score_into(out, old, resume.keep, resume.todo, backend, progress) if resume.todo else []
    return ScoreSummary(out, len(rows), sum(r["error"] is not None for r in rows), resume.skipped,
                        time.perf_counter() - start, model.model_sha256, dict(resume.rescored))


def _output_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.is_dir() or not out.parent.is_dir():
        raise ScoreError(f"{out}: give a results file (*.parquet or *.csv) in an existing folder")
    if out.suffix.lower() not in OUTPUT_SUFFIXES:  # a results.txt holding parquet bytes would mislead its reader
        raise ScoreError(f"{out}: the results are written as parquet or csv; name the file *.parquet or *.csv")
    if out.is_symlink():
        raise ScoreError(f"{out}: a symbolic link; results are never read or written through one: choose "
                         f"another --out")
    if out.suffix.lower() == ".parquet":
        try:
            require("score", "huskyai score --out *.parquet")
        except MissingExtraError as err:
            raise MissingExtraError(f"{err}; or name the file *.csv, which needs only pandas") from None
    return out


def _score_into(out: Path, old: list[Row], keep: list[Row], todo: list[Photo], backend, progress: bool) -> list[Row]:
    """Score ``todo`` with ``backend``, rewriting ``out`` (``keep`` plus the new rows) every
    CHECKPOINT_SECONDS and at the end, unless that would write back exactly ``old``; the new rows."""
    from tqdm import tqdm  # in every install: gradio brings it (through huggingface_hub)

    rows: list[Row] = []
    last_write = time.perf_counter()
    with backend, tqdm(total=len(todo), unit="photo", disable=not progress, file=sys.stderr) as bar:
        try:
            for chunk in backend.map(todo):
                rows += chunk
                bar.update(len(chunk))
                if time.perf_counter() - last_write > CHECKPOINT_SECONDS:
                    write_results(out, keep + rows)
                    last_write = time.perf_counter()
        finally:  # keep what was scored, even on Ctrl-C or a crash: the next run resumes from it
            if rows and not _same_rows(keep + rows, old):
                write_results(out, keep + rows)
    return rows


def _same_rows(rows: list[Row], old: list[Row]) -> bool:
    """Whether ``rows`` are ``old`` (refusals tried again and refused again alike: nothing to rewrite)."""
    def by_path(r: Row) -> str:
        return str(r["path"])

    return len(rows) == len(old) and sorted(rows, key=by_path) == sorted(old, key=by_path)
