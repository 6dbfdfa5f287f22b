"""An attacker's surrogate: a different ImageNet backbone (EfficientNet-Lite2, not the victim's Lite0,
so that transfer is not flattered by shared weights) with a logistic-regression head on its pooled features.

This is the cheap attacker: features once per query photo, then a linear head fitted on the victim's
answers (soft labels when the API reveals probabilities, hard labels when it reveals only the verdict).
Written by hand rather than with ART's CopycatCNN/KnockoffNets: those train a whole torch network by
SGD, which costs hours on a CPU for what a linear head on frozen features does in seconds.
The surrogate works on the victim's input (the photo after the card's public crop and resize), in
pixels [0, 1], so PGD on it crafts images one can upload as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SURROGATE_ARCH = "tf_efficientnet_lite2"


class Surrogate:
    """Lite2 features + a linear head; ``logits`` takes NCHW pixels in [0, 1] at the victim's input size."""

    def __init__(self, classes: Sequence[str], positive: str, arch: str = SURROGATE_ARCH):
        import torch

        from huskyai.network.backbones import get_arch, load_pretrained

        self.arch = get_arch(arch)
        self.net = load_pretrained(self.arch)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.mean = torch.tensor(self.arch.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(self.arch.std).view(1, 3, 1, 1)
        self.classes, self.pos_index = list(classes), list(classes).index(positive)
        self.w = torch.zeros(0)
        self.b = 0.0

    def _pooled(self, x):
        import torch.nn.functional as F

        from huskyai.inference.preprocess import normalise

        size = self.arch.input_size
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return self.net.forward_head(self.net.forward_features(normalise(x, self.mean, self.std)), pre_logits=True)

    def features(self, images: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """Pooled features of HxWx3 uint8 images (the victim's input)."""
        import torch

        from huskyai.inference.preprocess import to_unit

        out = []
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                x = torch.from_numpy(np.stack([to_unit(im) for im in images[i:i + batch_size]]))
                out.append(self._pooled(x).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.net.num_features), np.float32)

    def fit(self, feats: np.ndarray, p_pos: np.ndarray, c: float = 1.0) -> Surrogate:
        """Fit the head to the victim's P(positive): each photo counts as positive with weight p and
        negative with weight 1 - p, so probabilities, rounded ones and bare labels (p in {0, 1}) fit alike."""
        import torch
        from sklearn.linear_model import LogisticRegression

        x = np.concatenate([feats, feats])
        y = np.r_[np.ones(len(feats)), np.zeros(len(feats))]
        weight = np.r_[p_pos, 1 - p_pos]
        keep = weight > 0
        head = LogisticRegression(C=c, max_iter=2000)
        if len(set(y[keep])) < 2:  # every answer the same class: a constant model, as an attacker would get
            head.coef_, head.intercept_ = np.zeros((1, feats.shape[1])), np.array([20.0 if y[keep][0] else -20.0])
        else:
            head.fit(x[keep], y[keep], sample_weight=weight[keep])
        self.w = torch.from_numpy(head.coef_[0].astype(np.float32))
        self.b = float(head.intercept_[0])
        return self

    def positive_probability(self, feats: np.ndarray) -> np.ndarray:
        z = feats @ self.w.numpy() + self.b
        return 1 / (1 + np.exp(-np.clip(z, -50, 50)))

    def logits(self, x):
        """Two-class logits in the victim's class order, for huskyai.redteam.whitebox.pgd."""
        import torch

        z = self._pooled(x) @ self.w + self.b
        zero = torch.zeros_like(z)
        return torch.stack([z, zero] if self.pos_index == 0 else [zero, z], dim=1)
