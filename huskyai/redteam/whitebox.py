"""White-box perturbations: FGSM and PGD under L-infinity, on the real network.

The attacked function takes pixels in [0, 1] and normalises inside, so eps is in pixel units
(8/255 = eight grey levels), as an attacker who sends images would count it.

Written plainly rather than with torchattacks: torchattacks 3.5.1 runs on this torch (its FGSM gave
the same images to the bit in a check here), but it pins requests~=2.25.1, which would downgrade a
library the rest of the stack uses. tests/test_redteam.py checks both attacks against the closed
form on a linear model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from huskyai.inference.preprocess import normalise
from huskyai.network.runtime import network_of

if TYPE_CHECKING:
    import torch

EPSILONS = (1 / 255, 2 / 255, 4 / 255, 8 / 255)


class PixelModel:
    """The export's network as logits(pixels in [0, 1]), for gradient attacks (torch needed); photos are
    prepared and normalised by the predictor's own huskyai.inference.preprocess.Preprocessing."""

    def __init__(self, predictor):
        import torch

        self.predictor = predictor
        self.preprocessing = predictor.preprocessing
        self.net = network_of(predictor, with_softmax=False)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.mean = torch.from_numpy(self.preprocessing.mean_array[None])
        self.std = torch.from_numpy(self.preprocessing.std_array[None])

    def pixels(self, source) -> np.ndarray:
        """A photo (anything huskyai.load accepts) as the CHW pixels in [0, 1] the network sees, unnormalised."""
        from huskyai.images.decode import load_image

        return self.preprocessing.pixels(load_image(source))

    def logits(self, x):
        return self.net(normalise(x, self.mean, self.std))


def fgsm(model: PixelModel, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    import torch

    x = x.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model.logits(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def pgd(model: PixelModel, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10,
        alpha: float | None = None, seed: int = 0) -> torch.Tensor:
    """Projected gradient descent with a random start inside the eps-ball."""
    import torch

    alpha = alpha or eps / 4
    gen = torch.Generator().manual_seed(seed)
    adv = (x + (torch.rand(x.shape, generator=gen) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model.logits(adv), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * grad.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
    return adv.detach()


def perturb_attack(predictor, photos: Sequence[Path], labels: Sequence[str], epsilons=EPSILONS,
                   steps: int = 10, batch_size: int = 16) -> dict:
    """Clean and robust accuracy under FGSM and PGD at each eps, plus examples to show."""
    import torch

    model = PixelModel(predictor)
    x_all = torch.from_numpy(np.stack([model.pixels(p) for p in photos]))
    y_all = torch.tensor([predictor.classes.index(label) for label in labels])
    result = {"n": len(photos), "steps": steps, "epsilons": [round(e * 255) for e in epsilons], "attacks": {}}
    examples = {}
    with torch.no_grad():
        clean_pred = model.logits(x_all).argmax(1)
    result["clean_accuracy"] = float((clean_pred == y_all).float().mean())
    for name, attack in (("fgsm", fgsm), ("pgd", pgd)):
        accs = {}
        for eps in epsilons:
            advs = []
            for i in range(0, len(x_all), batch_size):
                kwargs = {"steps": steps} if name == "pgd" else {}
                advs.append(attack(model, x_all[i:i + batch_size], y_all[i:i + batch_size], eps, **kwargs))
            adv = torch.cat(advs)
            with torch.no_grad():
                probs = model.logits(adv).softmax(1)
            accs[f"{round(eps * 255)}/255"] = float((probs.argmax(1) == y_all).float().mean())
            if name == "pgd" and eps == max(epsilons):
                examples = {"clean": x_all[:6].numpy(), "adversarial": adv[:6].numpy(),
                            "clean_probs": torch.softmax(model.logits(x_all[:6]), 1).detach().numpy(),
                            "adv_probs": probs[:6].numpy(), "labels": list(labels[:6])}
        result["attacks"][name] = accs
    result["_examples"] = examples
    return result
