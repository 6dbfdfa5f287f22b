"""Inference engines behind the predictor, each built from verified bytes, never from a path:
ONNX Runtime on the export's own model.onnx (default: fast, no torch), or torch on model.safetensors
(the reference, and the fallback where onnxruntime or the graph is missing).
"""

from __future__ import annotations

import io
import warnings

import numpy as np


class EngineError(RuntimeError):
    """No inference engine could be set up."""


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


class OnnxEngine:
    name = "onnx"

    def __init__(self, graph: bytes, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads:  # a pool of worker processes wants one thread each, not one per core each
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


def create_engine(kind: str, arch: str, n_classes: int, weights: bytes,
                  graph: bytes | None, threads: int | None = None) -> OnnxEngine | TorchEngine:
    """``kind``: "onnx", "torch" or "auto" (ONNX Runtime on ``graph`` when both exist, else torch).
    ``threads``: ONNX Runtime's intra-op threads (default: one per core)."""
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
            return OnnxEngine(graph, threads)
        if kind == "onnx":
            raise EngineError(problem)
        warnings.warn(f"{problem}; serving with the slower torch engine instead", stacklevel=3)
    try:
        return TorchEngine(arch, n_classes, weights)
    except ImportError as err:
        raise EngineError(f"the torch engine needs torch, timm and safetensors ({err}): "
                          "pip install 'huskyai[explain]'") from None
