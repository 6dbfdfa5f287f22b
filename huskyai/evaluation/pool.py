"""The scoring workers: one photo file -> one result row, and a pool of processes doing it on every core.

Each worker process holds one Predictor, loaded and verified against the very card the parent trusted
(its sha256 pinned), whose ONNX Runtime session runs one thread: N single-thread sessions on N cores
beat one N-thread session, which spends its time synchronising on small convolutions. Workers start
with "forkserver" (or "spawn"), never "fork": a forked copy of a loaded ONNX Runtime is not safe.
Photos are read by huskyai.images.decode.read_limited: never through a symbolic link, and only from the very
regular file the folder scan found (its device and inode), so a link planted in a folder, or a file swapped
between the scan and the read, is never read: its bytes are neither scored nor hashed into the results.
Only numpy, Pillow and onnxruntime are imported here: never torch, fastai or timm.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huskyai.errors import InvalidImageError
from huskyai.images.decode import read_limited
from huskyai.images.folders import Photo
from huskyai.inference.predictor import Predictor, load
from huskyai.trust import exports

if TYPE_CHECKING:
    import pyarrow as pa

Row = dict[str, Any]
COLUMNS = ("path", "sha256", "label", "positive_probability", "error", "model_sha256")
CHUNK = 8  # photos per task: small enough to spread evenly and to move the progress bar often


def cpu_count() -> int:
    """The cores this process may run on (all of them where the OS cannot say)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def inode_only(identity: str | None) -> str | None:
    """``identity`` without its device (":inode"): for another machine, which numbers the devices of a
    shared file system its own way (the inode is the file server's)."""
    return None if identity is None else ":" + identity.partition(":")[2]


def score_file(model: Predictor, photo: Photo | str) -> Row:
    """The result row of one photo file; a refused or unreadable photo gives a row with its error
    (and no sha256 when its bytes were never read)."""
    path, identity, refusal = (photo, None, None) if isinstance(photo, str) else photo
    row: Row = dict(path=path, sha256=None, label=None, positive_probability=None, error=refusal,
                    model_sha256=model.model_sha256)
    if refusal is not None:
        return row
    try:
        data = read_limited(path, identity=identity)
        row["sha256"] = hashlib.sha256(data).hexdigest()
        p = model.predict(data, name=Path(path).name)
    except InvalidImageError as err:
        row["error"] = str(err)
        return row
    row.update(label=p.label, positive_probability=p.positive_probability)
    return row


def result_schema() -> pa.Schema:
    """The pyarrow schema of result rows (pyarrow is the "score" extra: imported only here)."""
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("sha256", pa.string()), ("label", pa.string()),
                      ("positive_probability", pa.float64()), ("error", pa.string()), ("model_sha256", pa.string())])


def model_ref(model: Predictor) -> str | None:
    """How a worker names ``model``: None for the shipped one (a cluster node finds its own installed
    copy, checked against the same pin), else the export folder's absolute path."""
    folder = Path(model.export_dir).resolve()
    return None if folder == Path(exports.DEFAULT_EXPORT).resolve() else str(folder)


def load_worker_model(ref: str | None, sha256: str) -> Predictor:
    """The model a worker scores with: only the card with this sha256 is accepted (a file swapped since
    the parent loaded it is refused), on ONNX Runtime (never torch) with one thread."""
    return load(ref, engine="onnx", sha256=sha256, threads=1)


# the worker process's state: its model, or why it could not load one (raised in the parent, by name)
_WORKER: dict[str, Any] = {}


def _init_worker(ref: str | None, sha256: str) -> None:
    try:
        _WORKER["model"] = load_worker_model(ref, sha256)
    except Exception as err:  # noqa: BLE001 - an initializer that raises breaks the pool without a message
        _WORKER["error"] = err


def _score_chunk(photos: list[Photo]) -> list[Row]:
    if "error" in _WORKER:
        raise _WORKER["error"]
    return [score_file(_WORKER["model"], p) for p in photos]


def _ready() -> int:
    _score_chunk([])
    time.sleep(0.01)  # leave the next call to a worker still loading its model
    return os.getpid()


def chunks(items: Iterable[Photo], size: int) -> Iterator[list[Photo]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class LocalPool:
    """``workers`` processes scoring photo files; use as a context manager, then ``map(photos)``."""

    def __init__(self, model: Predictor, workers: int):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        self.executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                            initargs=(model_ref(model), model.model_sha256))

    def warm_up(self) -> None:
        """Start every worker and load its model now (otherwise the first photos pay for it)."""
        ready: set[int] = set()
        while len(ready) < self.workers:  # until each worker has answered at least once
            ready.update(f.result() for f in [self.executor.submit(_ready) for _ in range(self.workers)])

    def map(self, photos: Iterable[Photo]) -> Iterator[list[Row]]:
        """Rows, a chunk at a time, in the order chunks finish; a bounded number of chunks in flight."""
        todo = chunks(photos, CHUNK)
        pending: set[Future] = set()
        while True:
            pending.update(self.executor.submit(_score_chunk, c) for c in islice(todo, 2 * self.workers - len(pending)))
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
