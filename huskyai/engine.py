"""Inference engines behind the predictor: ONNX Runtime (default, fast, no torch at run time) and
torch (the reference, and the fallback where onnxruntime is missing).

The ONNX graph is not shipped (export/ stays small): it is built once from the verified
safetensors weights and cached under ``$HUSKYAI_CACHE`` (default ``~/.cache/huskyai``), named by
the weights' sha256. A sidecar records the graph's own sha256; a cached graph whose hash does not
match it is rebuilt, never used.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .artifacts import sha256_of


class EngineError(RuntimeError):
    """No inference engine could be set up."""


def cache_dir() -> Path:
    return Path(os.environ.get("HUSKYAI_CACHE") or Path.home() / ".cache" / "huskyai")


def _torch_network(arch: str, n_classes: int, weights: Path, with_softmax: bool = True):
    import torch
    from safetensors.torch import load_file

    from .model import build_model

    net = build_model(arch, n_classes)
    net.load_state_dict(load_file(str(weights)), strict=True)
    net.eval()
    if not with_softmax:
        return net

    class WithSoftmax(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x).softmax(1)

    return WithSoftmax(net).eval()


class TorchEngine:
    name = "torch"

    def __init__(self, arch: str, n_classes: int, weights: Path):
        self.net = _torch_network(arch, n_classes, weights)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.net(torch.from_numpy(batch)).numpy()


class OnnxEngine:
    name = "onnx"

    def __init__(self, onnx_path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


def build_onnx(arch: str, n_classes: int, size: int, weights: Path, dest: Path) -> str:
    """Export the network (softmax included) to ONNX at ``dest``, atomically; returns its sha256."""
    import torch

    net = _torch_network(arch, n_classes, weights)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".onnx.part")
    os.close(fd)
    try:
        torch.onnx.export(net, (torch.zeros(1, 3, size, size),), tmp, input_names=["image"],
                          output_names=["probabilities"], opset_version=17, dynamo=False,
                          dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}})
        digest = sha256_of(Path(tmp))
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return digest


def cached_onnx(arch: str, n_classes: int, size: int, weights: Path, weights_sha256: str) -> Path:
    """The ONNX graph for these (already verified) weights: from the cache, or built now."""
    path = cache_dir() / f"{weights_sha256}.onnx"
    sidecar = path.with_suffix(".json")
    try:
        recorded = json.loads(sidecar.read_text())
        if recorded.get("weights_sha256") == weights_sha256 and sha256_of(path) == recorded.get("onnx_sha256"):
            return path
    except (OSError, ValueError):
        pass  # missing, partial or tampered: rebuild below
    try:
        digest = build_onnx(arch, n_classes, size, weights, path)
    except ImportError as err:
        raise EngineError(f"building the ONNX graph needs torch, timm and onnx ({err}); "
                          "pip install -r requirements.txt, or load with engine='torch'") from None
    import torch

    sidecar.write_text(json.dumps({"weights_sha256": weights_sha256, "onnx_sha256": digest,
                                   "built_with_torch": torch.__version__, "arch": arch}))
    return path


def create_engine(kind: str, arch: str, n_classes: int, size: int, weights: Path,
                  weights_sha256: str) -> OnnxEngine | TorchEngine:
    """``kind``: "onnx", "torch" or "auto" (ONNX Runtime when installed, else torch)."""
    if kind not in ("auto", "onnx", "torch"):
        raise EngineError(f"unknown engine {kind!r}: use 'auto', 'onnx' or 'torch'")
    if kind in ("auto", "onnx"):
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            if kind == "onnx":
                raise EngineError("engine 'onnx' needs onnxruntime: pip install onnxruntime") from None
        else:
            try:
                return OnnxEngine(cached_onnx(arch, n_classes, size, weights, weights_sha256))
            except EngineError as err:
                if kind == "onnx":
                    raise
                warnings.warn(f"{err}; serving with the slower torch engine instead", stacklevel=3)
    return TorchEngine(arch, n_classes, weights)
