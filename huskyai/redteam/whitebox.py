"""White-box perturbations: FGSM and PGD under L-infinity, and PGD under L2, on the real network.

The attacked function takes pixels in [0, 1] and normalises inside, so eps is in pixel units
(8/255 = eight grey levels), as an attacker who sends images would count it; an L2 radius is the
Euclidean norm of the change over every value of the model's input (3 x size x size, each in [0, 1]),
the space randomized smoothing certifies in.

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
NORMS = ("linf", "l2")


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


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each row's best other logit minus its true one: above zero once the model is fooled. PGD climbs this
    rather than the cross-entropy, whose gradient is exactly zero in float32 where the model is very sure
    (softmax rounds to one), which leaves a step nowhere to go."""
    import torch

    true = logits.gather(1, y[:, None])[:, 0]
    others = logits.masked_fill(torch.nn.functional.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return others.max(1).values - true


def step_sizes(eps: float, steps: int, alpha: float | None = None) -> list[float]:
    """PGD's step sizes: ``alpha`` (by default such that the steps add up to 2.5 * eps, the total of Madry et
    al. 2018's eps / 4 over ten steps), halved after each quarter of the steps. Fixed steps overshoot where
    the margin is far from smooth, as this network's is at the larger eps, so that a bigger ball could leave
    more photos unfooled than a smaller one; halving (as APGD, Croce and Hein 2020, does when progress stalls)
    ends with small steps, and the total lets even three steps cross the ball from the random start."""
    weights = [0.5 ** (4 * t // steps) for t in range(steps)]
    first = alpha or 2.5 * eps / max(sum(weights), 1e-12)
    return [first * w for w in weights]


def _per_image(v: torch.Tensor) -> torch.Tensor:
    """Each image's L2 norm, shaped to broadcast over its pixels."""
    return v.flatten(1).norm(dim=1).reshape(-1, *[1] * (v.dim() - 1))


def project(adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str = "linf") -> torch.Tensor:
    """``adv`` moved into the ``norm`` ball of radius ``eps`` around ``x`` (L-infinity: clipped per pixel; L2:
    scaled back towards ``x`` when longer than ``eps``), then into [0, 1]. Clipping to [0, 1] never takes a point
    out of the ball: ``x`` is inside [0, 1], so each pixel only moves closer to it."""
    import torch

    if norm == "linf":
        adv = torch.min(torch.max(adv, x - eps), x + eps)
    elif norm == "l2":
        delta = adv - x
        adv = x + delta * (eps / _per_image(delta).clamp_min(1e-12)).clamp(max=1.0)
    else:
        raise ValueError(f"unknown norm {norm!r}: use one of {', '.join(NORMS)}")
    return adv.clamp(0, 1)


def _random_start(x: torch.Tensor, eps: float, norm: str, gen: torch.Generator) -> torch.Tensor:
    """A random point of the ball: uniform per pixel for L-infinity; for L2 a random direction at a uniformly
    drawn fraction of the radius (a uniform draw in the ball would sit on its surface in this many dimensions)."""
    import torch

    if norm == "linf":
        return project(x + (torch.rand(x.shape, generator=gen) * 2 - 1) * eps, x, eps, norm)
    direction = torch.randn(x.shape, generator=gen)
    fraction = torch.rand((len(x),) + (1,) * (x.dim() - 1), generator=gen)
    return project(x + eps * fraction * direction / _per_image(direction).clamp_min(1e-12), x, eps, norm)


def _ascent(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent direction of unit ``norm`` for a gradient: its sign (L-infinity), or the gradient
    scaled to unit L2 length per image."""
    return grad.sign() if norm == "linf" else grad / _per_image(grad).clamp_min(1e-12)


def pgd(model: PixelModel, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10,
        alpha: float | None = None, seed: int = 0, norm: str = "linf") -> torch.Tensor:
    """Projected gradient ascent on the margin from a random start inside the ``norm`` ball of radius ``eps``
    ("linf": every pixel within eps; "l2": the change's Euclidean norm within eps), with the step sizes of
    :func:`step_sizes` (``alpha``: the first), each step along the steepest direction for that norm; for each
    image, the iterate with the largest margin (a step can go past the best point: the margin is far from
    smooth). ``model`` is anything with ``logits(pixels)``: the network (PixelModel), a surrogate, or the
    smoothed classifier's expectation over noise (huskyai.redteam.smoothing.SmoothedLogits)."""
    import torch

    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}: use one of {', '.join(NORMS)}")
    gen = torch.Generator().manual_seed(seed)
    adv = _random_start(x, eps, norm, gen)
    best, best_margin = adv.clone(), torch.full((len(x),), float("-inf"))
    sizes = step_sizes(eps, steps, alpha)
    for step in range(steps + 1):  # the last pass only scores the last step
        with torch.set_grad_enabled(step < steps):
            adv.requires_grad_(step < steps)
            m = margin(model.logits(adv), y)
        better = m.detach() > best_margin
        best[better], best_margin[better] = adv.detach()[better], m.detach()[better]
        if step == steps:
            break
        (grad,) = torch.autograd.grad(m.sum(), adv)
        adv = project(adv.detach() + sizes[step] * _ascent(grad, norm), x, eps, norm)
    return best


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
