"""The network: a pretrained ImageNet CNN whose pooled features and ImageNet class scores feed one
linear husky head.

The ImageNet classifier already separates "Siberian husky" from "malamute" and "Eskimo dog"; the
head keeps those 1000 log-probabilities next to the pooled features instead of throwing them away,
which is what makes about 100 husky photos enough.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import create_backbone, get_arch


class HuskyNet(nn.Module):
    def __init__(self, backbone: nn.Module, n_classes: int = 2):
        super().__init__()
        self.backbone = backbone
        n_features = backbone.num_features + backbone.num_classes
        # standardisation of the head's input, fitted with the head (starts as identity)
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.head = nn.Linear(n_features, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)
        imagenet = F.log_softmax(self.backbone.get_classifier()(pooled), dim=1)
        return torch.cat([pooled, imagenet], dim=1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.head((features - self.feature_mean) / self.feature_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


def build_model(arch: str, n_classes: int = 2, backbone: nn.Module | None = None) -> HuskyNet:
    """A HuskyNet for ``arch``: pass a pretrained ``backbone``, or get random weights to load into."""
    return HuskyNet(backbone if backbone is not None else create_backbone(get_arch(arch)), n_classes)
