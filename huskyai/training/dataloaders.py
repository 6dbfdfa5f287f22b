"""fastai's side of the data flow: photos -> DataBlock -> DataLoaders, and the Learner around a HuskyNet.

Photos are decoded by huskyai.images.decode (the same hardened decoder serving uses). What validation,
``test_dl``, ``learn.predict`` and the head's features see is huskyai.inference.preprocess itself: its
``crop_resize`` is the validation item transform and its ``normalise`` the batch transform, so
``learn.predict`` and ``huskyai.load`` agree by construction. Only training adds random crops and
augmentation.
"""

from __future__ import annotations

import tempfile
from operator import itemgetter
from pathlib import Path

import numpy as np
import torch
from fastai.vision.all import (
    CategoryBlock,
    CrossEntropyLossFlat,
    DataBlock,
    ImageBlock,
    IndexSplitter,
    Learner,
    PILImage,
    Resize,
    TensorImage,
    Transform,
    accuracy,
    aug_transforms,
    params,
)
from PIL import Image

from huskyai.errors import IntegrityError
from huskyai.images.decode import load_image
from huskyai.images.folders import Sample, stratified_valid_indices
from huskyai.inference.preprocess import Preprocessing, crop_resize, normalise
from huskyai.network.net import HuskyNet
from huskyai.trust import exports


class HuskyPILImage(PILImage):
    """fastai's PILImage, decoded by huskyai.images.decode so training sees photos exactly as serving does."""

    @classmethod
    def create(cls, fn: Path | str | bytes | np.ndarray | Image.Image, **kwargs):  # types guide fastai's test_dl
        return cls(load_image(fn))


class CropResize(Transform):
    """Validation, test_dl and ``learn.predict``: huskyai.inference.preprocess.crop_resize, the predictor's own."""
    split_idx, order = 1, 1  # validation only; where fastai's Resize would run

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def encodes(self, img: Image.Image) -> Image.Image:
        return type(img)(crop_resize(img, self.size))  # stays a fastai PILImage for ToTensor


class NormaliseCard(Transform):
    """The batch transform: huskyai.inference.preprocess.normalise with the card's mean and std (decodes for plots)."""
    parameters, order = ["mean", "std"], 99  # fastai moves ``parameters`` to the batch's device; after augmenting

    def __init__(self, prep: Preprocessing):
        super().__init__()
        self.mean = torch.from_numpy(prep.mean_array[None])
        self.std = torch.from_numpy(prep.std_array[None])

    def encodes(self, x: TensorImage) -> TensorImage:
        return normalise(x, self.mean, self.std)

    def decodes(self, x: TensorImage) -> TensorImage:
        return x * self.std.to(x.device) + self.mean.to(x.device)


class TrainingOnly(Transform):
    """fastai's batch augmentations, on the training side only: its affine ones also run when validating,
    as an identity warp that still resamples (up to 0.006 grey levels off). One instance for them all:
    a DataBlock keeps one transform per class."""
    split_idx = 0

    def __init__(self, tfms: list[Transform]):
        super().__init__()
        self.tfms = sorted(tfms, key=lambda t: t.order)
        self.order = self.tfms[0].order

    def encodes(self, x: TensorImage) -> TensorImage:
        for tfm in self.tfms:
            x = tfm(x, split_idx=0)
        return x


def data_block(classes: list[str], size: int, mean, std, valid_idx: list[int]) -> DataBlock:
    """Training: a random square crop and augmentation; validation: huskyai.inference.preprocess; both normalised
    by it."""
    prep = Preprocessing(size, mean, std)
    return DataBlock(
        blocks=(ImageBlock(cls=HuskyPILImage), CategoryBlock(vocab=classes, sort=False)),
        get_x=itemgetter(0),
        get_y=itemgetter(1),
        splitter=IndexSplitter(valid_idx),
        item_tfms=[Resize(prep.size, split_idx=0), CropResize(prep.size)],  # the random crop trains only
        batch_tfms=[TrainingOnly(aug_transforms(max_rotate=10.0, max_zoom=1.2)), NormaliseCard(prep)],
    )


def input_std(dls) -> torch.Tensor:
    """The card's per-channel std as the batches are normalised by it (NormaliseCard, the last batch transform):
    noise given in [0, 1] pixels is this much smaller after normalising."""
    normalise_card = dls.after_batch.fs[-1]
    assert isinstance(normalise_card, NormaliseCard)
    return normalise_card.std


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

    from huskyai.network.net import model_for_weights

    classes, prep = list(card["classes"]), Preprocessing.from_card(card)
    blank = np.zeros((prep.size, prep.size, 3), np.uint8)  # two stand-in items fix the pipelines, then are dropped
    dls = data_block(classes, prep.size, prep.mean, prep.std, valid_idx=[1]).dataloaders(
        [[blank, classes[0]], [blank, classes[-1]]], bs=1, num_workers=0)
    model = model_for_weights(card["arch"], len(classes), load_safetensors(weights))
    return Learner(dls.new_empty(), model, loss_func=CrossEntropyLossFlat(), metrics=[accuracy],
                   splitter=backbone_and_head, path=Path(tempfile.gettempdir()))


def backbone_and_head(model: HuskyNet) -> list:
    return [params(model.backbone), params(model.head)]


def load_learner(export_dir: str | Path | None = None, sha256: str | None = None,
                 trust_unsigned: bool = False) -> Learner:
    """fastai's ``Learner`` for an export: trusted and verified as ``huskyai.load`` does, never unpickled.

    No scan can make a cloudpickle file safe (it can rebuild any function), so Husky AI never opens
    learner.pkl: the Learner is made from code, the trusted card and the verified safetensors bytes.
    ``learn.predict(photo)`` agrees with ``huskyai.load().predict``; ``learn.export(path)`` writes a
    pickle for plain fastai users (who then run whatever that file holds when they load it)."""
    export = exports.open_export(export_dir, sha256=sha256, trust_unsigned=trust_unsigned)
    if exports.WEIGHTS_NAME not in export.files:
        raise IntegrityError(f"{export.folder}: the model card lists no {exports.WEIGHTS_NAME}")
    return learner_from_card(export.card, export.files[exports.WEIGHTS_NAME])
