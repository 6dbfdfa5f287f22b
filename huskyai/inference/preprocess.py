"""Photo -> model input: the one place it happens, for serving, training's validation side, the head's
features, the attacks and the explanations.

A decoded RGB photo (huskyai.images.decode decodes untrusted files) is centre-cropped to its largest square,
resized bilinearly to the card's ``input_size`` (in uint8, before any float conversion), scaled to
[0, 1] and normalised with the card's mean and std, channels first (CHW float32). Serving does the
scaling and normalising in place in one float32 array (:meth:`Preprocessing.to_input`), the same
operations in the same order as :func:`to_unit` then :func:`normalise`, so the result is the same to
the bit, without their temporaries: 0.5 ms instead of 4.4 ms at 288 px (bench/preprocess.py).

fastai sees the same: huskyai.training.dataloaders puts :func:`crop_resize` in the DataBlock as the validation
item transform and :func:`normalise` as the batch transform, so ``learn.predict`` and ``huskyai.load``
agree by construction. Only numpy and Pillow here: serving never imports torch or fastai.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from PIL import Image

RESIZE = {"method": "crop", "resample": "bilinear",
          "description": "centre crop to a square, then resize (fastai Resize, validation mode)"}

Array = TypeVar("Array")  # a numpy array or a torch tensor: normalise works on both


def crop_box(photo_size: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the largest centred square of a (width, height) photo: fastai's
    ``Resize(size)`` arithmetic in validation mode, to the pixel (explanations map back onto it)."""
    w, h = photo_size
    m = w / size if w / size < h / size else h / size
    side = int(m * size)
    left, top = int(0.5 * (w - side)), int(0.5 * (h - side))
    return left, top, left + side, top + side


def crop_resize(img: Image.Image, size: int) -> Image.Image:
    """The largest centred square, resized bilinearly to ``size`` x ``size``; Pillow's bilinear filter
    spans every source pixel when shrinking, which defeats image-scaling attacks."""
    return img.crop(crop_box(img.size, size)).resize((size, size), Image.BILINEAR)


def to_unit(img: Image.Image | np.ndarray) -> np.ndarray:
    """HxWx3 uint8 pixels -> CHW float32 in [0, 1] (the same division by 255 as fastai's IntToFloatTensor)."""
    return np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0


def normalise(x: Array, mean: Array, std: Array) -> Array:
    """(x - mean) / std, channel-wise; numpy arrays here, torch tensors in fastai's batch transform."""
    return (x - mean) / std


def _as_rgb_image(photo: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(photo, np.ndarray):
        if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 array, got {photo.dtype} {photo.shape}")
        return Image.fromarray(photo)
    if not isinstance(photo, Image.Image) or photo.mode != "RGB":
        raise ValueError(f"expected a decoded RGB image, got {getattr(photo, 'mode', type(photo).__name__)} "
                         "(decode photos with huskyai.images.decode.load_image)")
    return photo


@dataclass(frozen=True)
class Preprocessing:
    """The card's preprocessing: ``size`` in pixels, per-channel ``mean`` and ``std`` on [0, 1] pixels."""
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    _mean: np.ndarray = field(init=False, repr=False, compare=False)  # mean_array, made once for to_input
    _std: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):  # accept lists and numpy numbers; keep plain, hashable values
        object.__setattr__(self, "size", int(self.size))
        for name in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, name))
            if len(values) != 3:
                raise ValueError(f"{name} needs one value per RGB channel, got {values}")
            object.__setattr__(self, name, values)
        if min(self.std) <= 0 or self.size < 1:
            raise ValueError(f"bad preprocessing: size {self.size}, std {self.std}")
        object.__setattr__(self, "_mean", self.mean_array)
        object.__setattr__(self, "_std", self.std_array)

    @classmethod
    def from_card(cls, card: dict) -> Preprocessing:
        """From a model card's ``input_size``, ``normalization`` and ``resize`` fields."""
        resize = card.get("resize", RESIZE)
        if (resize.get("method"), resize.get("resample")) != (RESIZE["method"], RESIZE["resample"]):
            raise ValueError(f"the card asks for resize {resize}; Husky AI implements "
                             f"{RESIZE['method']} with {RESIZE['resample']} resampling")
        norm = card["normalization"]
        return cls(card["input_size"], norm["mean"], norm["std"])

    def card_fields(self) -> dict:
        """What a model card records about this preprocessing (``from_card`` reads it back)."""
        return {"input_size": self.size, "resize": dict(RESIZE),
                "normalization": {"mean": list(self.mean), "std": list(self.std)}}

    @property
    def mean_array(self) -> np.ndarray:
        """``mean`` as a (3, 1, 1) float32 array, to broadcast over CHW."""
        return np.array(self.mean, dtype=np.float32).reshape(3, 1, 1)

    @property
    def std_array(self) -> np.ndarray:
        return np.array(self.std, dtype=np.float32).reshape(3, 1, 1)

    def crop_resize(self, photo: Image.Image | np.ndarray) -> Image.Image:
        """The photo as the network sees it, still in 8-bit RGB (``size`` x ``size``)."""
        return crop_resize(_as_rgb_image(photo), self.size)

    def pixels(self, photo: Image.Image | np.ndarray) -> np.ndarray:
        """CHW float32 pixels in [0, 1], before normalisation (what gradient attacks perturb)."""
        return to_unit(self.crop_resize(photo))

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """[0, 1] pixels (CHW or NCHW) -> the network's input."""
        return normalise(pixels, self.mean_array, self.std_array)

    def denormalise(self, x: np.ndarray) -> np.ndarray:
        """The network's input -> [0, 1] pixels (for showing an input)."""
        return x * self.std_array + self.mean_array

    def to_input(self, pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """HxWx3 uint8 pixels -> the network's CHW float32 input, written into ``out`` when given.
        The operations of ``normalise(to_unit(pixels))`` in their order, each in place: equal to the bit."""
        out = np.empty((3, *pixels.shape[:2]), np.float32) if out is None else out
        out[...] = pixels.transpose(2, 0, 1)
        out /= 255.0
        out -= self._mean
        out /= self._std
        return out

    def array(self, photo: Image.Image | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """One decoded photo -> the network's CHW float32 input (written into ``out`` when given)."""
        return self.to_input(np.asarray(self.crop_resize(photo)), out)

    def batch(self, photos: Iterable[Image.Image | np.ndarray]) -> np.ndarray:
        """Decoded photos -> an NCHW float32 batch."""
        photos = list(photos)
        out = np.empty((len(photos), 3, self.size, self.size), np.float32)
        for photo, row in zip(photos, out):
            self.array(photo, row)
        return out
