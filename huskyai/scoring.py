"""Batch scoring: many photos into one parquet file, on every core or on a Ray cluster, resumable.

    from huskyai.scoring import score
    score("photos/", "results.parquet")                  # a process per core, one ONNX Runtime thread each
    score("photos/", "results.parquet", use_ray=True)    # the same scorer on Ray Data (pip install 'huskyai[ray]')

One row per photo: ``path``, ``sha256`` of its bytes, ``label``, ``positive_probability`` (P(husky)),
``error`` (why the photo was refused, else null) and ``model_sha256`` (the card that scored it).
Photos already in the output are skipped, so an interrupted run picks up where it stopped; the file is
rewritten atomically every minute and at the end, and never mixes rows of two models.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .artifacts import IntegrityError
from .engine import EngineError
from .extras import MissingExtraError, require
from .predictor import Predictor, load
from .scoring_pool import COLUMNS, LocalPool, Row, cpu_count, result_schema, score_file

if TYPE_CHECKING:
    import pyarrow as pa  # the "score" extra, imported only when scoring

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")  # what a folder is searched for
CHECKPOINT_SECONDS = 60.0
Source = str | os.PathLike | Iterable[str | os.PathLike]


class ScoreError(ValueError):
    """The source or the output file cannot be used; the message says why."""


@dataclass(frozen=True)
class ScoreSummary:
    out: Path
    scored: int  # photos scored in this run, refused ones included
    refused: int  # of those, photos that gave an error row
    skipped: int  # photos already in the output
    seconds: float  # wall time of this run's scoring (workers' start included)
    model_sha256: str

    @property
    def photos_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0


def list_photos(source: str | os.PathLike) -> list[str]:
    """Absolute paths of the photos ``source`` names: a folder (image files in it, recursively), one image
    file, a text file of paths (one a line, relative to the file's folder; # comments), or a glob."""
    path = Path(source)
    if path.is_dir():
        found = [str(p.absolute()) for p in sorted(path.rglob("*"))
                 if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        if not found:
            raise ScoreError(f"{source}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return found
    if path.is_file():
        return [str(path.absolute())] if path.suffix.lower() in IMAGE_SUFFIXES else _read_list(path)
    found = [os.path.abspath(p) for p in sorted(glob.glob(str(source), recursive=True)) if os.path.isfile(p)]
    if not found:
        raise ScoreError(f"{source}: no such folder or file, and no file matches it as a glob")
    return found


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, OSError) as err:
        raise ScoreError(f"{path}: not a text file of photo paths ({err})") from None
    names = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not names:
        raise ScoreError(f"{path}: the list of photos is empty")
    return list(dict.fromkeys(os.path.abspath(path.parent / name) for name in names))  # once each, in order


def read_results(out: Path, model_sha256: str) -> pa.Table | None:
    """The rows already in ``out`` (a pyarrow Table), or None; ScoreError if they are not this model's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not out.exists():
        return None
    try:
        table = pq.read_table(out)
    except (pa.ArrowException, OSError) as err:
        raise ScoreError(f"{out}: exists and is not a parquet file ({err}); choose another --out") from None
    if missing := [c for c in COLUMNS if c not in table.column_names]:
        raise ScoreError(f"{out}: not a results file of huskyai score (no column {', '.join(missing)})")
    others = set(table["model_sha256"].unique().to_pylist()) - {model_sha256}
    if others:
        raise ScoreError(f"{out}: holds rows scored by another model (card sha256 {sorted(others)[0][:16]}...), "
                         f"not this one ({model_sha256[:16]}...): write to another --out, or score with that model")
    return table.select(list(COLUMNS)).cast(result_schema())


def write_results(out: Path, old: pa.Table | None, rows: list[Row]) -> None:
    """``old`` rows plus ``rows``, sorted by path, written to a temporary file renamed over ``out``
    (a reader or a crash never sees half a file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=result_schema())
    table = (pa.concat_tables([old, table]) if old is not None else table).sort_by("path")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _backend(model: Predictor, workers: int | None, use_ray: bool, ray_address: str | None):
    """What scores the photos: Ray actors, a local process pool, or (workers=0) this process."""
    if use_ray or ray_address:
        require("ray", "huskyai score --ray")
        from .scoring_ray import RayPool

        return RayPool(model, workers, ray_address)
    workers = cpu_count() if workers is None else workers
    return LocalPool(model, workers) if workers > 0 else _InProcess(model)


class _InProcess:
    """workers=0: no pool, this process's model (for small jobs and debugging)."""

    def __init__(self, model: Predictor):
        self.model = model

    def map(self, paths: list[str]) -> Iterator[list[Row]]:
        return ([score_file(self.model, p)] for p in paths)

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def score(source: Source, out: str | os.PathLike, model: Predictor | str | os.PathLike | None = None,
          *, workers: int | None = None, use_ray: bool = False, ray_address: str | None = None,
          sha256: str | None = None, trust_unsigned: bool = False, progress: bool = True) -> ScoreSummary:
    """Score every photo of ``source`` not yet in ``out`` and add their rows to ``out`` (parquet).

    ``source``: a folder, an image file, a text file of paths or a glob (see :func:`list_photos`), or a
    list of them.

    ``model``: a loaded Predictor, an export folder or the shipped model's name (default: the shipped
    model); ``sha256``/``trust_unsigned`` as in :func:`huskyai.load`. ``workers``: processes (default:
    one per core; 0 scores in this process), or Ray actors with ``use_ray`` or ``ray_address``
    (default: one per CPU of the cluster). ``progress``: a progress bar on stderr.
    """
    if workers is not None and (workers < 0 or workers == 0 and (use_ray or ray_address)):
        raise ScoreError(f"--workers {workers}: give at least 1 (0 means this process only, without Ray)")
    require("score", "huskyai score")
    model = model if isinstance(model, Predictor) else load(model, engine="onnx", sha256=sha256,
                                                            trust_unsigned=trust_unsigned)
    out = _output_path(out)
    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    paths = list(dict.fromkeys(p for s in sources for p in list_photos(s)))  # each photo once, in order
    old = read_results(out, model.model_sha256)
    done = set(old["path"].to_pylist()) if old is not None else set()
    todo = [p for p in paths if p not in done]
    start = time.perf_counter()
    rows = _score_into(out, old, todo, _backend(model, workers, use_ray, ray_address), progress) if todo else []
    return ScoreSummary(out, len(rows), sum(r["error"] is not None for r in rows), len(paths) - len(todo),
                        time.perf_counter() - start, model.model_sha256)


def _output_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.is_dir() or not out.parent.is_dir():
        raise ScoreError(f"{out}: give a parquet file in an existing folder")
    if out.suffix.lower() != ".parquet":  # a results.csv holding parquet bytes would mislead whoever opens it
        raise ScoreError(f"{out}: the results are written as parquet; name the file *.parquet")
    return out


def _score_into(out: Path, old: pa.Table | None, todo: list[str], backend, progress: bool) -> list[Row]:
    """Score ``todo`` with ``backend``, rewriting ``out`` (``old`` rows plus the new ones) every
    CHECKPOINT_SECONDS and at the end; the new rows."""
    from tqdm import tqdm  # in every install: gradio brings it (through huggingface_hub)

    rows: list[Row] = []
    last_write = time.perf_counter()
    with backend, tqdm(total=len(todo), unit="photo", disable=not progress, file=sys.stderr) as bar:
        try:
            for chunk in backend.map(todo):
                rows += chunk
                bar.update(len(chunk))
                if time.perf_counter() - last_write > CHECKPOINT_SECONDS:
                    write_results(out, old, rows)
                    last_write = time.perf_counter()
        finally:  # keep what was scored, even on Ctrl-C or a crash: the next run resumes from it
            if rows:
                write_results(out, old, rows)
    return rows


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``huskyai score`` (the model's --model/--sha256/--trust-unsigned are cli.py's)."""
    p.add_argument("source", nargs="+", help="photo files, folders (image files in them, recursively), globs "
                                             "('photos/**/*.jpg') or text files with one photo path a line")
    p.add_argument("--out", required=True, help="parquet file of results; photos already in it are skipped")
    p.add_argument("--workers", type=int, help="processes (default: one per core; 0: this process only), "
                                               "or Ray actors with --ray (default: one per CPU of the cluster)")
    p.add_argument("--ray", action="store_true", help="score on Ray Data (a local Ray unless --ray-address)")
    p.add_argument("--ray-address", help="the Ray cluster to score on (e.g. ray://head:10001); implies --ray")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_score(args: argparse.Namespace) -> int:
    """``huskyai score``: 0 when every photo has a row (refused ones carry their error), 1 on failure,
    130 when interrupted (what was scored is kept)."""
    try:
        s = score(args.source, args.out, args.model, workers=args.workers, use_ray=args.ray,
                  ray_address=args.ray_address, sha256=args.sha256, trust_unsigned=args.trust_unsigned,
                  progress=not args.no_progress)
    except (ScoreError, IntegrityError, EngineError, MissingExtraError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: the photos scored so far are in {args.out}; the same command resumes", file=sys.stderr)
        return 130
    print(f"{s.out}: {s.scored} photos scored ({s.refused} refused, with their error), {s.skipped} already there; "
          f"{s.photos_per_second:.1f} photos/s")
    return 0
