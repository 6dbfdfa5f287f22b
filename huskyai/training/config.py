"""The options of training, of the label doctor and of heatmaps, each with its default and its --help, written once.

``huskyai.train(data, out, epochs=3)`` takes them as keywords and ``python -m huskyai train --epochs 3``
as options: the CLI builds its argparse options from these dataclasses. This module stays light (no
torch), so a command can parse its arguments and check its photos before the heavy imports.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from huskyai.errors import DataError
from huskyai.network.backbones import (  # names only: backbones imports torch where it loads weights
    ARCHS,
    DEFAULT_ARCH,
    Arch,
    get_arch,
)
from huskyai.settings import EXPLAIN_METHODS as METHODS

# cleanlab's rules for which photos the doctor flags (cleanlab.filter.find_label_issues' filter_by)
FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")


def option(default: Any, help: str, **cli: Any) -> Any:
    """A dataclass field with its --help text; ``cli`` holds argparse settings (``flag``, ``type``,
    ``choices``, ``metavar``) or ``python_only=True`` for an option the CLI does not offer."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class BackboneConfig:
    """What training and the doctor share: the backbone, its input and the logistic-regression head."""

    arch: str = option(DEFAULT_ARCH, "backbone", choices=sorted(ARCHS))
    weights: str | Path | None = option(None, "pretrained backbone weights file (e.g. for resnet34 offline)",
                                       metavar="FILE")
    size: int | None = option(None, "input size in pixels (default: the backbone's own)", type=int,
                              metavar="PX")
    positive: str = option("husky", "name of the positive class folder")
    seed: int = option(42, "random seed of the splits, the folds and torch")
    batch_size: int = option(32, "photos per batch", metavar="N")
    c: float = option(0.01, "inverse L2 strength of the logistic-regression head", flag="--head-c", metavar="C")

    def backbone(self) -> tuple[Arch, int]:
        """The architecture, and the input size in pixels: ``size``, else the backbone's own."""
        arch = get_arch(self.arch)
        return arch, self.size or arch.input_size


@dataclass
class TrainConfig(BackboneConfig):
    """Every option of ``huskyai.train`` (the CLI's ``train`` and ``train.py``)."""

    epochs: int = option(0, "fastai fine-tuning epochs over the whole network after the head is fitted",
                         metavar="N")
    lr: float = option(1e-4, "backbone learning rate when fine-tuning (head: 10x)")
    holdout: float = option(0.0, "fraction of each class kept out of training and reported as a test set")
    valid_pct: float = option(0.2, "validation fraction")
    junk: int = option(0, "add N generated junk images (noise, solid colours, patterns) to the negatives",
                       metavar="N")
    cv: int = option(0, "repeat a 5-fold cross-validation of the head N times; metrics with 95%% intervals "
                        "on the card", metavar="N")
    zero_shot: bool = option(True, "no zero-shot stage (ImageNet's husky scores and margins) in the head",
                             flag="--plain-head")
    noise_sigma: float = option(0.0, "train for certified answers: Gaussian noise of this sigma (pixels in [0, 1]) on "
                                "every training photo (the head's features, and --epochs of fine-tuning if any) and a "
                                "plain head; the card records sigma for model.certify", metavar="SIGMA")
    pickle: bool = option(False, "also write fastai's learner.pkl (anyone loading it with fastai runs what it holds)")
    sign: bool = option(True, "sign the card with this machine's key, made on first use", python_only=True)

    def __post_init__(self) -> None:
        if not self.noise_sigma >= 0:  # also NaN: the card's sigma is what every certified radius is scaled by
            raise DataError(f"noise_sigma must be 0 (no noise) or a positive sigma, got {self.noise_sigma}")


@dataclass
class DoctorConfig(BackboneConfig):
    """Every option of ``huskyai.training.doctor.find_suspects`` (the CLI's ``doctor``)."""

    folds: int = option(5, "cross-validation folds")
    filter_by: str = option("prune_by_noise_rate", "cleanlab's rule for which photos to flag "
                            "(predicted_neq_given flags every out-of-fold disagreement)", choices=FILTERS)
    poison_fraction: float = option(0.0, "poison check: the share of each label you suspect is planted (e.g. 0.05); "
                                    "spectral signatures flag 1.5 times that many per label (0: no check)",
                                    metavar="F")


@dataclass
class ExplainConfig:
    """How heatmaps are made (``huskyai.evaluate(explain=True)``, the CLI's ``predict --explain`` and
    ``evaluate --explain``)."""

    explain_method: str = option(METHODS[0], "how the heatmap is made: grad-cam (needs torch: huskyai[explain]), "
                                 "occlusion (the ONNX engine, ~120 predictions) or auto (grad-cam where torch "
                                 "imports, else occlusion)", choices=METHODS)


def add_options(p: argparse.ArgumentParser, config: type) -> None:
    """One --option per field of a config dataclass (huskyai.training.config), with its default and help from there."""
    for f in fields(config):
        meta = dict(f.metadata)
        if meta.pop("python_only", False):
            continue
        flag, text = meta.pop("flag", "--" + f.name.replace("_", "-")), meta.pop("help")
        if isinstance(f.default, bool):  # a switch that turns the default around
            p.add_argument(flag, dest=f.name, action="store_false" if f.default else "store_true", help=text)
            continue
        kind = meta.pop("type", str if f.default is None else type(f.default))
        if f.default is not None and "default" not in text:
            text += " (default: %(default)s)"
        p.add_argument(flag, dest=f.name, type=kind, default=f.default, help=text, **meta)


def options_from(args: argparse.Namespace, config: type) -> dict:
    """The config's fields that the command line set (all it offers), as keywords for the API."""
    return {f.name: getattr(args, f.name) for f in fields(config) if hasattr(args, f.name)}
