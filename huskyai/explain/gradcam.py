"""Grad-CAM on the torch network of a loaded model (the maintained ``grad-cam`` package, MIT).

The target is the husky logit: HuskyNet's forward gives [0, z] for a zero-shot two-class model, so
out[positive] - out[other] is z, the log-odds of P(husky); for a plain head it is the same log-odds.
The target layer is the backbone's last feature map, the tensor ``forward_features`` hands to the global
pooling (tf_efficientnet_lite: ``bn2``, after ``conv_head``; ResNet: ``layer4``, whose output is
``layer4[-1]``'s). HuskyNet's head reads the pooled features AND the ImageNet log-probabilities (and the
zero-shot margins), and both are computed from that one map, so its gradient carries the whole husky
score, not only the pooled-feature half (tests/test_explain.py checks it).

torch and grad-cam are imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from huskyai.network.runtime import network_of

_CAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Predictor -> its GradCAM, built once
_LOCK = threading.Lock()  # a GradCAM keeps one call's activations in hooks: one call at a time


class HuskyLogit:
    """Grad-CAM's target: the positive class's log-odds from one sample's network output."""

    def __init__(self, positive: int, n_classes: int):
        self.positive = positive
        self.other = 1 - positive if n_classes == 2 else None

    def __call__(self, output):
        return output[self.positive] - (output[self.other] if self.other is not None else 0)


def target_layer(backbone, size: int = 64) -> tuple[str, object]:
    """(name, module) of the module whose output ``backbone.forward_features`` returns, the map the global
    pooling reads; the outermost such module (the last to finish). Found by running the backbone once,
    so it holds for any timm family rather than a table of names."""
    import torch

    finished: list[tuple[str, object, object]] = []
    hooks = [module.register_forward_hook(lambda m, args, out, name=name: finished.append((name, m, out)))
             for name, module in backbone.named_modules() if name]
    try:
        with torch.no_grad():
            final = backbone.forward_features(torch.zeros(1, 3, size, size))
    finally:
        for hook in hooks:
            hook.remove()
    for name, module, out in reversed(finished):
        if out is final:
            return name, module
    raise ValueError(f"no module of {type(backbone).__name__} produces its feature map: cannot place Grad-CAM")


class _Cam:
    """One model's torch network with Grad-CAM attached to its last feature map."""

    def __init__(self, model):
        from pytorch_grad_cam import GradCAM

        self.net = network_of(model, with_softmax=False)  # re-read and checked against the trusted card
        for p in self.net.parameters():  # gradients are needed at the feature map only, not for the weights
            p.requires_grad_(False)
        self.layer_name, layer = target_layer(self.net.backbone)
        self.cam = GradCAM(model=self.net, target_layers=[layer])
        self.cam.compute_input_gradient = True  # the input carries the graph, since the weights do not
        self.target = HuskyLogit(model.classes.index(model.positive), len(model.classes))

    def __call__(self, x: np.ndarray, target=None) -> np.ndarray:
        import torch

        try:
            return self.cam(input_tensor=torch.from_numpy(np.ascontiguousarray(x[None])),
                            targets=[target or self.target])[0]
        finally:
            self.cam.activations_and_grads.clear()


def grad_cam(model) -> _Cam:
    """The Grad-CAM of ``model`` (a Predictor), built on first use and kept while the model lives."""
    with _LOCK:
        cam = _CAMS.get(model)
        if cam is None:
            cam = _CAMS[model] = _Cam(model)
        return cam


def gradcam_map(model, x: np.ndarray, target=None) -> np.ndarray:
    """Grad-CAM of the preprocessed CHW input ``x``: float32 in [0, 1] at the input's size, all zero when
    nothing in the photo raises the husky logit. ``target``: another output function (tests)."""
    cam = grad_cam(model)
    with _LOCK:
        return np.asarray(cam(x, target), dtype=np.float32)
