"""The torch network of a verified export: as an inference engine, as an ONNX graph, and for gradients.

Built from the safetensors bytes that were hashed, never from a path. Torch is imported only inside these
functions, so importing this module costs nothing where torch is not installed.
"""

from __future__ import annotations

import io

import numpy as np

from huskyai.errors import EngineError
from huskyai.extras import require
from huskyai.trust.exports import ONNX_NAME, WEIGHTS_NAME, open_export


def torch_network(arch: str, n_classes: int, weights: bytes, with_softmax: bool = True):
    """The torch HuskyNet (softmax appended unless ``with_softmax=False``) with these safetensors bytes."""
    import torch
    from safetensors.torch import load as load_safetensors

    from huskyai.network.net import model_for_weights

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
        try:
            self.net = torch_network(arch, n_classes, weights)
        except ImportError as err:
            raise EngineError(f"the torch engine needs torch, timm and safetensors ({err}): "
                              "pip install 'huskyai[explain]'") from None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.net(torch.from_numpy(batch)).numpy()


def network_of(model, with_softmax: bool = True):
    """The torch network of a loaded model (a huskyai Predictor), for gradients (Grad-CAM, the red-team kit).
    The weights are read again and checked against the card that model already trusted."""
    export = open_export(model.export_dir, sha256=model.model_sha256)
    return torch_network(model.card["arch"], len(model.classes), export.files[WEIGHTS_NAME], with_softmax)


def onnx_for(card: dict, files: dict[str, bytes]) -> bytes:
    """The ONNX graph of an export made before graphs shipped (2026-11-28), built from its verified weights."""
    require("train", f"adding {ONNX_NAME} to an export that predates it")
    net = torch_network(card["arch"], len(card["classes"]), files[WEIGHTS_NAME])
    return onnx_bytes(net, int(card["input_size"]))
