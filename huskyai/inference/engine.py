"""The inference engine behind the predictor: ONNX Runtime on the export's own verified graph bytes, never a path.
Torch is not imported here: the torch engine (huskyai.network.runtime) is handed in by ``huskyai.load`` when
it is asked for, or when an old export has no graph.
Every ONNX Runtime session Husky AI serves from is made by ``ort_session``, the one owner of how a session
is built from graph bytes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from huskyai.errors import EngineError


class Engine(Protocol):
    """Float32 NCHW batch in, class probabilities out."""
    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


# where ONNX Runtime looks for a graph's external data files: a path under the null device, where no file
# can ever exist, so a graph that names one fails to load instead of reading the working folder
EXTERNAL_DATA_FOLDER = os.path.join(os.devnull, "no-external-data")
LOAD_FORMAT = "ONNX"  # never ONNX Runtime's own flatbuffer format, which it would detect from the bytes


def ort_session(graph: bytes, options=None):
    """An ONNX Runtime session on the CPU for ``graph`` (verified bytes, already held to huskyai.trust.graphpolicy),
    with ``options`` (an ``onnxruntime.SessionOptions``; default: ONNX Runtime's own).

    Two session settings stand behind the graph policy as a second wall. From bytes, ONNX Runtime 1.32 reads
    an initializer's external data relative to the working folder (it refuses absolute paths and ".."), and
    ``session.model_external_initializers_file_folder_path`` moves that to a folder that cannot exist; it has
    no setting that forbids external data outright. ``session.load_model_format`` = "ONNX" makes it parse the
    bytes as the protobuf the policy checked, never as its own format."""
    import onnxruntime as ort

    options = options or ort.SessionOptions()
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", EXTERNAL_DATA_FOLDER)
    options.add_session_config_entry("session.load_model_format", LOAD_FORMAT)
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class OnnxOptions:
    """ONNX Runtime's session options, each default chosen by ``bench/engine_options.py`` on this shared
    2-core VM (the table is in docs/performance.md); ``threads`` None means one per core. Measured against
    ONNX Runtime's own defaults, at load average 9 to 16: spinning off took one request, batches,
    two requests at once and predict_batch to 0.26-0.43x the time (noise: 0.87-1.14x); the batch-1
    session to 0.54-0.77x; basic or extended optimisation, the parallel mode and no arena were slower
    or within the noise."""
    level: str = "all"  # graph optimisation: "basic", "extended", "layout" or "all"
    threads: int | None = None  # intra-op threads for one call
    inter_threads: int = 1  # only used by the parallel execution mode
    parallel: bool = False  # execution mode: run independent branches at once (this network is a chain)
    arena: bool = True  # enable_cpu_mem_arena: reuse activation buffers between calls
    spinning: bool = False  # session.intra_op.allow_spinning: idle pool threads busy-wait (steal a shared core)
    fixed_batch: bool = True  # a batch-1 session whose shapes are all known: the "same" padding folds away

    def session_options(self, batch: int | None = None):
        """The ``onnxruntime.SessionOptions`` these stand for; ``batch`` fixes the graph's free batch axis."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{self.level.upper()}")
        options.log_severity_level = 3
        if self.threads:  # a pool of worker processes wants one thread each, not one per core each
            options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = self.inter_threads
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if self.parallel else ort.ExecutionMode.ORT_SEQUENTIAL
        options.enable_cpu_mem_arena = self.arena
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        if batch is not None:
            options.add_free_dimension_override_by_name("batch", batch)
        return options


class OnnxEngine:
    """ONNX Runtime on a graph with a free batch axis named "batch". With ``fixed_batch`` one photo runs
    in a session made for batch 1, where every shape is known and timm's run-time "same" padding
    (Shape, Gather, Ceil, Pad: a third of the nodes) is folded away; batches run row by row in it,
    which measured faster per photo on 2 cores than the dynamic session at batch 4 or 8."""
    name = "onnx"

    def __init__(self, graph: bytes, threads: int | None = None, options: OnnxOptions | None = None):
        options = options or OnnxOptions()
        self.options = replace(options, threads=threads or options.threads)
        batch = 1 if self.options.fixed_batch else None
        self.session = ort_session(graph, self.options.session_options(batch))
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if not self.options.fixed_batch or len(batch) == 1:
            return self.session.run(None, {self.input_name: batch})[0]
        rows = [self.session.run(None, {self.input_name: batch[i:i + 1]})[0] for i in range(len(batch))]
        return np.concatenate(rows) if rows else np.empty((0, self.session.get_outputs()[0].shape[1]), np.float32)


def create_engine(kind: str, arch: str, n_classes: int, weights: bytes, graph: bytes | None,
                  threads: int | None = None, options: OnnxOptions | None = None,
                  torch_engine: Callable[[str, int, bytes], Engine] | None = None) -> Engine:
    """``kind``: "onnx", "torch" or "auto" (ONNX Runtime on ``graph`` when there is one, else torch).
    ``threads``: ONNX Runtime's intra-op threads (default: one per core); ``options``: its other settings;
    ``torch_engine``: how to make the torch engine (``huskyai.load`` passes huskyai.network's)."""
    if kind not in ("auto", "onnx", "torch"):
        raise EngineError(f"unknown engine {kind!r}: use 'auto', 'onnx' or 'torch'")
    if kind in ("auto", "onnx"):
        if graph:
            return OnnxEngine(graph, threads, options)
        problem = "this export has no model.onnx (made before 2026-11-28: `python -m huskyai sign DIR` adds it)"
        if kind == "onnx" or torch_engine is None:
            raise EngineError(problem)
        warnings.warn(f"{problem}; serving with the slower torch engine instead", stacklevel=3)
    if torch_engine is None:
        raise EngineError("the torch engine is made by huskyai.load(engine='torch'), which needs torch")
    return torch_engine(arch, n_classes, weights)
