"""Inference engines behind the predictor, each built from verified bytes, never from a path:
ONNX Runtime on the export's own model.onnx (default: fast, no torch), or torch on model.safetensors
(the reference, and the fallback where onnxruntime or the graph is missing).
Every ONNX Runtime session Husky AI serves from is made by ``ort_session``, the one owner of how a session
is built from graph bytes.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, replace

import numpy as np


class EngineError(RuntimeError):
    """No inference engine could be set up."""


# where ONNX Runtime looks for a graph's external data files: a path under the null device, where no file
# can ever exist, so a graph that names one fails to load instead of reading the working folder
EXTERNAL_DATA_FOLDER = os.path.join(os.devnull, "no-external-data")
LOAD_FORMAT = "ONNX"  # never ONNX Runtime's own flatbuffer format, which it would detect from the bytes


def ort_session(graph: bytes, options=None):
    """An ONNX Runtime session on the CPU for ``graph`` (verified bytes, already held to huskyai.graphpolicy),
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


def torch_network(arch: str, n_classes: int, weights: bytes, with_softmax: bool = True):
    """The torch HuskyNet (softmax appended unless ``with_softmax=False``) with these safetensors bytes."""
    import torch
    from safetensors.torch import load as load_safetensors

    from .model import model_for_weights

    net = model_for_weights(arch, n_classes, load_safetensors(weights))
    return torch.nn.Sequential(net, torch.nn.Softmax(dim=1)).eval() if with_softmax else net


def onnx_bytes(net, size: int) -> bytes:
    """``net`` (softmax included) as an fp32 ONNX graph with a dynamic batch axis."""
    import torch

    buf = io.BytesIO()
    torch.onnx.export(net, (torch.zeros(1, 3, size, size),), buf, input_names=["image"],
                      output_names=["probabilities"], opset_version=17, dynamo=False,
                      dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}})
    return buf.getvalue()


class TorchEngine:
    name = "torch"

    def __init__(self, arch: str, n_classes: int, weights: bytes):
        self.net = torch_network(arch, n_classes, weights)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.net(torch.from_numpy(batch)).numpy()


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
                  threads: int | None = None, options: OnnxOptions | None = None) -> OnnxEngine | TorchEngine:
    """``kind``: "onnx", "torch" or "auto" (ONNX Runtime on ``graph`` when both exist, else torch).
    ``threads``: ONNX Runtime's intra-op threads (default: one per core); ``options``: its other settings."""
    if kind not in ("auto", "onnx", "torch"):
        raise EngineError(f"unknown engine {kind!r}: use 'auto', 'onnx' or 'torch'")
    if kind in ("auto", "onnx"):
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            problem = "engine 'onnx' needs onnxruntime: pip install onnxruntime"
        else:
            problem = None if graph else "this export has no model.onnx (made before 2026-11-28: " \
                                         "`python -m huskyai sign DIR` adds it)"
        if problem is None:
            return OnnxEngine(graph, threads, options)
        if kind == "onnx":
            raise EngineError(problem)
        warnings.warn(f"{problem}; serving with the slower torch engine instead", stacklevel=3)
    try:
        return TorchEngine(arch, n_classes, weights)
    except ImportError as err:
        raise EngineError(f"the torch engine needs torch, timm and safetensors ({err}): "
                          "pip install 'huskyai[explain]'") from None
