"""Training with fastai, top to bottom: photos -> DataLoaders -> features -> head -> (fine-tune) -> export/.

The recipe, chosen by measurement (docs/model-quality.md):
1. a pretrained backbone, its pooled features, its 1000 ImageNet log-probabilities and five zero-shot
   husky scores (huskyai.model);
2. a head fitted by class-balanced logistic regression on two views of every training photo (as is
   and mirrored), a zero-shot stage on its out-of-fold logits, and the threshold folded into the
   bias (huskyai.head);
3. optionally ``--epochs N`` of fastai ``fit_one_cycle`` over the whole network, at a low rate;
4. validation metrics, optional repeated cross-validation (huskyai.validation), plots, export.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from fastai.vision.all import Callback, CrossEntropyLossFlat, Learner, TrainEvalCallback, accuracy

from . import artifacts
from .backbones import DEFAULT_ARCH, get_arch, load_pretrained
from .data import PhotoSet, Sample, scan_many, split_holdout
from .dataloaders import backbone_and_head, make_dataloaders
from .export import model_card, move_into_place, save_weights_and_graph
from .head import extract_features, fit_head
from .metrics import binary_metrics, format_metrics
from .model import HuskyNet
from .plots import save_confusion_matrix, save_top_losses


class FrozenBatchNorm(Callback):
    """Keep batch-norm statistics as pretrained while fine-tuning: small, imbalanced batches would
    drift them away from the features the head was fitted on."""

    order = TrainEvalCallback.order + 1

    def before_train(self):
        for m in self.model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def _junk_samples(n: int, folder: Path, label: str, seed: int) -> list[Sample]:
    from .junk import junk_images

    folder.mkdir(parents=True)
    samples = []
    for i, (kind, img) in enumerate(junk_images(n, seed=seed + 1)):
        path = folder / f"junk_{i:05d}_{kind}.png"
        img.save(path)
        samples.append(Sample(path, label, f"junk-{seed + 1}-{i}"))
    return samples


def _cross_validate(model: HuskyNet, x_views, is_pos, kept: list[Sample], dls, repeats: int, c: float, seed: int,
                    report) -> dict:
    from .head import margins
    from .validation import cross_validate, cv_report

    if len(model.head.bias) != 2:
        return {}
    source = {str(s.path): s.source for s in kept}
    sources = [source.get(path, "") for path, _ in dls.train.items]
    strata = [f"{label}|{src}" for (_, label), src in zip(dls.train.items, sources)]
    report(f"repeated cross-validation of the head: {repeats} x 5 folds over {len(strata)} training photos")
    decisions = cross_validate(x_views, is_pos, margins(model, x_views[0]) if model.zero_shot else None, strata,
                               repeats=repeats, c=c, seed=seed)
    result = cv_report(decisions, is_pos, sources)
    for name, m in result.items():
        report(f"cv {name}: " + ", ".join(f"{k} {m[k]['mean']:.3f} [{m[k]['ci95'][0]:.3f}, {m[k]['ci95'][1]:.3f}]"
                                          for k in ("accuracy", "precision", "recall", "f1")))
    return {"cv": result | {"repeats": repeats, "folds": 5}}


def _predict_items(learn: Learner, samples: list[Sample]) -> np.ndarray:
    dl = learn.dls.test_dl([[str(s.path), s.label] for s in samples], with_labels=True)
    probs, _ = learn.get_preds(dl=dl)
    return probs.numpy()


def _metrics_for(probs: np.ndarray, labels: list[str], classes: list[str]) -> dict:
    positive = len(classes) - 1
    return binary_metrics([lab == classes[positive] for lab in labels], list(probs.argmax(1) == positive))


def train(data: str | Path | list[str | Path], out: str | Path = "export", arch: str = DEFAULT_ARCH, epochs: int = 0,
          size: int | None = None, positive: str = "husky", holdout: float = 0.0, valid_pct: float = 0.2,
          seed: int = 42, lr: float = 1e-4, weights: str | Path | None = None, batch_size: int = 32,
          c: float = 0.01, junk: int = 0, zero_shot: bool = True, cv: int = 0, pickle: bool = False,
          sign: bool = True, report=print) -> dict:
    """Train on ``data`` (a folder with one sub-folder per label, or several such folders) and export
    to ``out``; returns the model card.

    ``zero_shot`` (two classes only) adds ImageNet's husky scores and a second stage on its margins.
    ``cv`` > 0 repeats a stratified 5-fold cross-validation of the head that many times over the
    training photos and puts the metrics, with 95% intervals, on the card (minutes on 1,000 photos).
    ``pickle`` also writes fastai's learner.pkl (for plain fastai users; Husky AI never opens it).
    ``sign`` signs the card with this machine's key, created on first use (see huskyai.artifacts)."""
    started = time.time()
    torch.manual_seed(seed)
    arch_info = get_arch(arch)
    size = size or arch_info.input_size
    photos: PhotoSet = scan_many(data, positive, report)
    kept, held = split_holdout(photos, holdout)
    report(f"{len(photos.samples)} photos {photos.counts()}, {len(photos.skipped)} skipped"
           + (f", {len(held)} held out for testing" if held else ""))
    backbone = load_pretrained(arch_info, weights)
    model = HuskyNet(backbone, n_classes=len(photos.classes), zero_shot=zero_shot and len(photos.classes) == 2)
    positive_idx = len(photos.classes) - 1
    with tempfile.TemporaryDirectory() as work:
        if junk:  # the junk attack's own images, as negatives: white, noise, patterns are not huskies
            kept = kept + _junk_samples(junk, Path(work) / "junk", photos.classes[0], seed)
            report(f"added {junk} generated junk images to '{photos.classes[0]}'")
        dls = make_dataloaders(kept, photos.classes, size, arch_info.mean, arch_info.std, valid_pct, seed,
                               batch_size)
        learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=[accuracy],
                        splitter=backbone_and_head, path=Path(work))
        plain_train = dls.test_dl(dls.train.items, with_labels=True)
        x_views, y = extract_features(model, plain_train, label="training features")
        threshold = fit_head(model, x_views, y, len(photos.classes), positive_idx, c=c, seed=seed, report=report)
        cv_metrics = _cross_validate(model, x_views, y == positive_idx, kept, dls, cv, c, seed, report) if cv else {}
        if epochs > 0:
            counts = np.bincount(y, minlength=len(photos.classes))
            class_weights = torch.tensor(len(y) / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
            learn.loss_func = CrossEntropyLossFlat(weight=class_weights)
            learn.fit_one_cycle(epochs, lr_max=slice(lr, lr * 10), cbs=FrozenBatchNorm())
            learn.loss_func = CrossEntropyLossFlat()
        model.eval()
        out = Path(out).resolve()
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".export-", dir=out))  # same file system: files move atomically
        try:
            valid_probs, _ = learn.get_preds(dl=dls.valid.new(shuffle=False, drop_last=False))
            valid_probs = valid_probs.numpy()
            valid_m = _metrics_for(valid_probs, [label for _, label in dls.valid.items], photos.classes)
            report("validation: " + format_metrics(valid_m))
            save_confusion_matrix(valid_m, photos.classes, stage / "confusion_matrix.png", "validation")
            save_top_losses(learn, valid_probs, stage / "top_losses.png")
            metrics = {"validation": valid_m} | cv_metrics
            if held:
                metrics["holdout"] = _metrics_for(_predict_items(learn, held), [s.label for s in held],
                                                  photos.classes)
                report("holdout:    " + format_metrics(metrics["holdout"]))
            if pickle:
                report("warning: learner.pkl is a pickle: whoever loads it with fastai.load_learner runs "
                       "whatever it holds; share model.safetensors and model.json instead")
                learn.export(stage / artifacts.LEARNER_NAME)
            save_weights_and_graph(model, size, stage)
            card = model_card(arch_info, photos, positive, size, threshold, metrics, data, held, dls,
                         dict(holdout_fraction=holdout, valid_pct=valid_pct, seed=seed, epochs=epochs, lr=lr,
                              head_c=c, junk_negatives=junk, zero_shot_stage=model.zero_shot,
                              pretrained_weights=str(weights) if weights else "default",
                              seconds=round(time.time() - started, 1)))
            card = artifacts.write_card(stage, card, artifacts.signing_key(create=True) if sign else None)
            move_into_place(stage, out)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    report(f"exported to {out} in {card['training']['seconds']} s: " + ", ".join(card["files"]))
    return card

