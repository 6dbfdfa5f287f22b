"""Fine-tuning with fastai: data -> learner -> head fitted on features -> optional fine-tune -> export/.

The recipe, chosen by measurement on the shared husky set (see the README):
1. a pretrained backbone, its pooled features and its 1000 ImageNet log-probabilities;
2. a linear head fitted by class-balanced logistic regression on those features (two views of
   every training photo: as is and mirrored), its decision threshold picked by cross-validation
   and folded into the bias, so argmax, fastai's ``learn.predict`` and the predictor all agree;
3. optionally ``--epochs N`` of fastai ``fit_one_cycle`` over the whole network, at a low rate;
4. validation metrics and plots, then export/ (see huskyai.artifacts).
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from datetime import datetime, timezone
from operator import itemgetter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # plots go to files; no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from fastai.vision.all import (  # noqa: E402
    Callback,
    CategoryBlock,
    ClassificationInterpretation,
    CrossEntropyLossFlat,
    DataBlock,
    ImageBlock,
    IndexSplitter,
    Learner,
    Normalize,
    PILImage,
    Resize,
    TrainEvalCallback,
    accuracy,
    aug_transforms,
    params,
)
from PIL import Image  # noqa: E402

from . import artifacts  # noqa: E402
from .backbones import DEFAULT_ARCH, get_arch, load_pretrained  # noqa: E402
from .data import PhotoSet, Sample, scan_many, split_holdout, stratified_valid_indices  # noqa: E402
from .head import extract_features, fit_head  # noqa: E402
from .images import load_image  # noqa: E402
from .metrics import binary_metrics, format_metrics  # noqa: E402
from .model import HuskyNet  # noqa: E402


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


class FrozenBatchNorm(Callback):
    """Keep batch-norm statistics as pretrained while fine-tuning: small, imbalanced batches would
    drift them away from the features the head was fitted on."""

    order = TrainEvalCallback.order + 1

    def before_train(self):
        for m in self.model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def _junk_samples(n: int, folder: Path, label: str, seed: int) -> list[Sample]:
    from .redteam.junk import junk_images

    folder.mkdir(parents=True)
    samples = []
    for i, (kind, img) in enumerate(junk_images(n, seed=seed + 1)):
        path = folder / f"junk_{i:05d}_{kind}.png"
        img.save(path)
        samples.append(Sample(path, label, f"junk-{seed + 1}-{i}"))
    return samples


def backbone_and_head(model: HuskyNet) -> list:
    return [params(model.backbone), params(model.head)]


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


def save_confusion_matrix(m: dict, classes: list[str], path: Path, title: str) -> None:
    c = m["confusion"]
    neg, pos = "not " + classes[-1] if len(classes) > 2 else classes[0], classes[-1]
    grid = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.imshow(grid, cmap="Blues")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=14,
                color="white" if v > grid.max() / 2 else "black")
    ax.set_xticks([0, 1], [neg, pos])
    ax.set_yticks([0, 1], [neg, pos])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(f"{title}\naccuracy {m['accuracy']:.3f}, precision {m['precision']:.2f}, recall {m['recall']:.2f}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_top_losses(learn: Learner, probs: np.ndarray, path: Path, k: int = 9) -> None:
    """fastai's top-losses grid (prediction / actual / loss / probability) from validation."""
    dl = learn.dls.valid.new(shuffle=False, drop_last=False)
    targets = torch.tensor([learn.dls.vocab.o2i[label] for _, label in dl.items])
    losses = torch.nn.functional.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-12)), targets,
                                          reduction="none")
    interp = ClassificationInterpretation(learn, dl, losses)
    interp.plot_top_losses(min(k, len(losses)), nrows=3, figsize=(9, 9))
    plt.gcf().savefig(path, dpi=80)
    plt.close("all")


def _versions() -> dict[str, str]:
    import fastai
    import PIL
    import timm

    return {"python": platform.python_version(), "torch": torch.__version__, "fastai": fastai.__version__,
            "timm": timm.__version__, "pillow": PIL.__version__}


def save_weights_and_graph(model: HuskyNet, size: int, folder: Path) -> None:
    """model.safetensors, and the same network with its softmax as model.onnx (what serving runs)."""
    from safetensors.torch import save_file

    from .engine import onnx_bytes

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / artifacts.WEIGHTS_NAME))
    graph = onnx_bytes(torch.nn.Sequential(model, torch.nn.Softmax(dim=1)).eval(), size)
    (folder / artifacts.ONNX_NAME).write_bytes(graph)


def _move_into_place(stage: Path, out: Path) -> None:
    """Replace the export in ``out`` by the staged one; only the export's own files are touched.
    The old card goes first and the new one last, so a crash half-way leaves no loadable mix."""
    (out / artifacts.CARD_NAME).unlink(missing_ok=True)
    for name in artifacts.EXPORT_NAMES:
        if (stage / name).is_file():
            os.replace(stage / name, out / name)
        else:
            (out / name).unlink(missing_ok=True)  # no file of an older model may linger
    os.replace(stage / artifacts.CARD_NAME, out / artifacts.CARD_NAME)


def _card(arch_info, photos: PhotoSet, positive: str, size: int, threshold: float, metrics: dict, data,
          held: list[Sample], dls, settings: dict) -> dict:
    def counts(labels) -> dict[str, int]:
        labels = list(labels)
        return {c: labels.count(c) for c in photos.classes}

    return {
        "name": "Husky AI",
        "arch": arch_info.name,
        "classes": photos.classes,
        "positive_class": positive,
        "input_size": size,
        "resize": {"method": "crop", "resample": "bilinear",
                   "description": "centre crop to a square, then resize (fastai Resize, validation mode)"},
        "normalization": {"mean": list(arch_info.mean), "std": list(arch_info.std)},
        "decision_threshold": 0.5,
        "threshold_folded_into_bias": threshold,
        "metrics": metrics,
        "training": {
            "data": ", ".join(Path(d).resolve().name for d in ([data] if isinstance(data, (str, Path)) else data)),
            "data_fingerprint": photos.fingerprint(),
            "counts": counts(label for _, label in dls.train.items),  # what the head was fitted on
            "validation_counts": counts(label for _, label in dls.valid.items),
            "holdout_counts": counts(s.label for s in held),
            "skipped": [why for _, why in photos.skipped],
            "holdout_files": sorted(s.key for s in held),
            **settings,
        },
        "versions": _versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


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
            card = _card(arch_info, photos, positive, size, threshold, metrics, data, held, dls,
                         dict(holdout_fraction=holdout, valid_pct=valid_pct, seed=seed, epochs=epochs, lr=lr,
                              head_c=c, junk_negatives=junk, zero_shot_stage=model.zero_shot,
                              pretrained_weights=str(weights) if weights else "default",
                              seconds=round(time.time() - started, 1)))
            card = artifacts.write_card(stage, card, artifacts.signing_key(create=True) if sign else None)
            _move_into_place(stage, out)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    report(f"exported to {out} in {card['training']['seconds']} s: " + ", ".join(card["files"]))
    return card

