"""The scorer on Ray Data (pip install 'huskyai[ray]'): the local pool's per-photo function, in a pool of
scorer actors, each holding one verified one-thread model.

Photos (path, the identity of the file the scan found, any refusal) go in with ``from_items`` and each actor
reads its photos itself, through the same size-limited, link-refusing reader as the local pool: an unreadable
or oversized file becomes an error row instead of failing the whole dataset (``read_binary_files`` would read
any size into the object store, and a file that vanished would fail the job). On a cluster, the photos and any
``--model`` folder must be at the same paths on every node (a shared file system), and huskyai installed
there; the shipped model is found in each node's own install and checked against the same pin.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from huskyai.evaluation.pool import CHUNK, Row, inode_only, load_worker_model, model_ref, result_schema, score_file
from huskyai.images.folders import Photo
from huskyai.inference.predictor import Predictor

if TYPE_CHECKING:
    import pyarrow as pa

# An actor runs one ONNX Runtime thread; asking for a fraction of a CPU leaves room for Ray Data's own
# tasks on a small machine (on 2 cores, 2 actors of 1 CPU each would leave none). The pool's size, not
# this, sets how many photos are scored at once.
CPUS_PER_ACTOR = 0.5


class Scorer:
    """A Ray Data actor: one verified model, a batch of photos (path, identity) in, a batch of result rows out."""

    def __init__(self, ref: str | None, sha256: str):
        self.model = load_worker_model(ref, sha256)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        photos = [Photo(*fields) for fields in zip(*(batch[c].to_pylist() for c in Photo._fields))]
        return pa.Table.from_pylist([score_file(self.model, p) for p in photos], schema=result_schema())


class RayPool:
    """Scorer actors on the Ray cluster at ``address`` (default: a local Ray on this machine's cores,
    or the one this process is already connected to); a context manager, then ``map(photos)``."""

    def __init__(self, model: Predictor, workers: int | None, address: str | None):
        self.ref, self.sha256 = model_ref(model), model.model_sha256
        self.workers, self.address = workers, address
        self.started = False

    def __enter__(self) -> RayPool:
        import ray

        if not ray.is_initialized():
            try:  # no num_cpus: Ray counts the cores itself, and joins a local cluster already running
                ray.init(address=self.address, include_dashboard=False, logging_level="warning")
            except (ConnectionError, RuntimeError) as err:
                from huskyai.errors import ScoreError

                raise ScoreError(f"cannot start or reach Ray at {self.address or 'this machine'}: {err}") from None
            self.started = True
        ray.data.DataContext.get_current().enable_progress_bars = False  # the scorer shows its own bar, so
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # neither Ray Data's progress lines
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # nor its note that they are off
        if self.workers is None:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        return self

    def map(self, photos: list[Photo]) -> Iterator[list[Row]]:
        import ray

        # a block per chunk of photos (at least one per actor, so that every actor has work)
        blocks = min(len(photos), max(self.workers, -(-len(photos) // CHUNK)), 10_000)
        items = [p._replace(identity=inode_only(p.identity))._asdict() for p in photos]  # actors may be elsewhere
        dataset = ray.data.from_items(items, override_num_blocks=blocks)
        results = dataset.map_batches(Scorer, fn_constructor_kwargs=dict(ref=self.ref, sha256=self.sha256),
                                      batch_size=CHUNK, batch_format="pyarrow", num_cpus=CPUS_PER_ACTOR,
                                      compute=ray.data.ActorPoolStrategy(size=self.workers))
        try:
            for batch in results.iter_batches(batch_size=None, batch_format="pyarrow"):
                yield batch.to_pylist()
        except ray.exceptions.RayActorError as err:  # e.g. a model file swapped since the parent checked it
            from huskyai.errors import ScoreError

            reason = next((line for line in reversed(str(err).splitlines()) if line.strip()), "")
            raise ScoreError(f"a Ray scorer actor died: {reason.strip()}") from None

    def __exit__(self, *exc: object) -> None:
        import ray

        if self.started:
            ray.shutdown()
