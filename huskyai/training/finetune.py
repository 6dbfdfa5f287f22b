"""The fastai Learner of a training run, and fine-tuning the whole network at a low rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from fastai.vision.all import Callback, CrossEntropyLossFlat, Learner, TrainEvalCallback, accuracy

from huskyai.images.folders import Sample
from huskyai.network.backbones import load_pretrained
from huskyai.network.net import HuskyNet
from huskyai.training.config import TrainConfig
from huskyai.training.dataloaders import backbone_and_head, input_std, make_dataloaders


class FrozenBatchNorm(Callback):
    """Keep batch-norm statistics as pretrained while fine-tuning: small, imbalanced batches would
    drift them away from the features the head was fitted on."""

    order = TrainEvalCallback.order + 1

    def before_train(self):
        for m in self.model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


class GaussianNoise(Callback):
    """Gaussian noise of ``sigma`` (in [0, 1] pixel units, so ``sigma / std`` after the card's normalisation) on
    every training batch: the base classifier of randomized smoothing must answer under exactly that noise."""

    order = TrainEvalCallback.order + 1

    def __init__(self, sigma: float, std: torch.Tensor):
        self.scale = sigma / std.reshape(1, -1, 1, 1)

    def before_batch(self):
        if self.training:
            xb = self.xb[0]
            self.learn.xb = (xb + torch.randn_like(xb) * self.scale.to(xb.device),)


def new_learner(samples: list[Sample], classes: list[str], config: TrainConfig, work: Path) -> Learner:
    """A Learner over ``samples``: the pretrained backbone in a HuskyNet (its head not fitted yet) and
    DataLoaders split by ``config.valid_pct``; fastai writes what it must under ``work``."""
    torch.manual_seed(config.seed)
    arch, size = config.backbone()
    model = HuskyNet(load_pretrained(arch, config.weights), n_classes=len(classes),
                     zero_shot=config.zero_shot and len(classes) == 2 and not config.noise_sigma)
    dls = make_dataloaders(samples, classes, size, arch.mean, arch.std, config.valid_pct, config.seed,
                           config.batch_size)
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=[accuracy], splitter=backbone_and_head,
                   path=work)


def fine_tune(learn: Learner, y: np.ndarray, epochs: int, lr: float, noise_sigma: float = 0.0) -> None:
    """``epochs`` of fit_one_cycle over the whole network (the head at 10x ``lr``), classes weighted by
    their rarity; nothing happens for 0 epochs; ``noise_sigma``: every training batch under Gaussian noise."""
    if epochs > 0:
        counts = np.bincount(y, minlength=len(learn.dls.vocab))
        class_weights = torch.tensor(len(y) / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
        learn.loss_func = CrossEntropyLossFlat(weight=class_weights)
        cbs = [FrozenBatchNorm()] + ([GaussianNoise(noise_sigma, input_std(learn.dls))] if noise_sigma else [])
        learn.fit_one_cycle(epochs, lr_max=slice(lr, lr * 10), cbs=cbs)
        learn.loss_func = CrossEntropyLossFlat()
    learn.model.eval()
