"""fastai's side of the data flow: photos -> DataBlock -> DataLoaders, and the Learner around a HuskyNet.

Photos are decoded by huskyai.images (the same hardened decoder serving uses); validation crops to
a centred square and resizes as the predictor does, so ``learn.predict`` and ``huskyai.load`` agree.
"""

from __future__ import annotations

import tempfile
from operator import itemgetter
from pathlib import Path

import numpy as np
from fastai.vision.all import (
    CategoryBlock,
    CrossEntropyLossFlat,
    DataBlock,
    ImageBlock,
    IndexSplitter,
    Learner,
    Normalize,
    PILImage,
    Resize,
    accuracy,
    aug_transforms,
    params,
)
from PIL import Image

from .data import Sample, stratified_valid_indices
from .images import load_image
from .model import HuskyNet


class HuskyPILImage(PILImage):
    """fastai's PILImage, decoded by huskyai.images so training sees photos exactly as serving does."""

    @classmethod
    def create(cls, fn: Path | str | bytes | np.ndarray | Image.Image, **kwargs):  # types guide fastai's test_dl
        return cls(load_image(fn))


def data_block(classes: list[str], size: int, mean, std, valid_idx: list[int]) -> DataBlock:
    """Crop-resize to ``size`` (centre crop when validating), augment the training side, normalise."""
    return DataBlock(
        blocks=(ImageBlock(cls=HuskyPILImage), CategoryBlock(vocab=classes, sort=False)),
        get_x=itemgetter(0),
        get_y=itemgetter(1),
        splitter=IndexSplitter(valid_idx),
        item_tfms=Resize(size),
        batch_tfms=[*aug_transforms(max_rotate=10.0, max_zoom=1.2), Normalize.from_stats(list(mean), list(std))],
    )


def make_dataloaders(samples: list[Sample], classes: list[str], size: int, mean, std,
                     valid_pct: float = 0.2, seed: int = 42, batch_size: int = 32):
    """fastai DataLoaders over ``samples``, split stratified by class."""
    valid_idx = stratified_valid_indices([f"{s.label}|{s.source}" for s in samples], valid_pct, seed)
    items = [[str(s.path), s.label] for s in samples]  # lists: fastai maps transforms over tuples
    n_train = len(items) - len(valid_idx)
    batch_size = max(2, min(batch_size, n_train))  # fastai drops the last partial training batch
    return data_block(classes, size, mean, std, valid_idx).dataloaders(items, bs=batch_size, num_workers=0,
                                                                       seed=seed)


def learner_from_card(card: dict, weights: bytes) -> Learner:
    """fastai's Learner rebuilt from code, the card and safetensors bytes: nothing is unpickled.

    Its DataLoaders are empty, as after fastai's ``load_learner``: ``learn.predict`` works at once;
    for ``learn.fine_tune`` on new photos set ``learn.dls`` (e.g. to ``make_dataloaders(...)``)."""
    from safetensors.torch import load as load_safetensors

    from .model import model_for_weights

    classes, size = list(card["classes"]), int(card["input_size"])
    norm = card["normalization"]
    blank = np.zeros((size, size, 3), np.uint8)  # two stand-in items fix the pipelines, then are dropped
    dls = data_block(classes, size, norm["mean"], norm["std"], valid_idx=[1]).dataloaders(
        [[blank, classes[0]], [blank, classes[-1]]], bs=1, num_workers=0)
    model = model_for_weights(card["arch"], len(classes), load_safetensors(weights))
    return Learner(dls.new_empty(), model, loss_func=CrossEntropyLossFlat(), metrics=[accuracy],
                   splitter=backbone_and_head, path=Path(tempfile.gettempdir()))


def backbone_and_head(model: HuskyNet) -> list:
    return [params(model.backbone), params(model.head)]
