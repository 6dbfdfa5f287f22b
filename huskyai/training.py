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

import math
import platform
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
from fastprogress.fastprogress import progress_bar  # noqa: E402
from PIL import Image  # noqa: E402

from . import artifacts  # noqa: E402
from .backbones import DEFAULT_ARCH, get_arch, load_pretrained  # noqa: E402
from .data import PhotoSet, Sample, scan, split_holdout, stratified_valid_indices  # noqa: E402
from .images import load_image  # noqa: E402
from .metrics import binary_metrics, format_metrics  # noqa: E402
from .model import HuskyNet  # noqa: E402


class HuskyPILImage(PILImage):
    """fastai's PILImage, decoded by huskyai.images so training sees photos exactly as serving does."""

    @classmethod
    def create(cls, fn: Path | str | bytes | np.ndarray | Image.Image, **kwargs):  # types guide fastai's test_dl
        return cls(load_image(fn))


def make_dataloaders(samples: list[Sample], classes: list[str], size: int, mean, std,
                     valid_pct: float = 0.2, seed: int = 42, batch_size: int = 32):
    """Crop-resize to ``size`` (centre crop when validating), augment the training side, normalise."""
    valid_idx = stratified_valid_indices([s.label for s in samples], valid_pct, seed)
    block = DataBlock(
        blocks=(ImageBlock(cls=HuskyPILImage), CategoryBlock(vocab=classes, sort=False)),
        get_x=itemgetter(0),
        get_y=itemgetter(1),
        splitter=IndexSplitter(valid_idx),
        item_tfms=Resize(size),
        batch_tfms=[*aug_transforms(max_rotate=10.0, max_zoom=1.2), Normalize.from_stats(list(mean), list(std))],
    )
    items = [[str(s.path), s.label] for s in samples]  # lists: fastai maps transforms over tuples
    n_train = len(items) - len(valid_idx)
    batch_size = max(2, min(batch_size, n_train))  # fastai drops the last partial training batch
    return block.dataloaders(items, bs=batch_size, num_workers=0, seed=seed)


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


def _backbone_and_head(model: HuskyNet) -> list:
    return [params(model.backbone), params(model.head)]


@torch.no_grad()
def extract_features(model: HuskyNet, dl, views: int = 2, label: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """Head-input features and targets for every item of ``dl`` (view 2 = mirrored)."""
    model.eval()
    feats, targets = [[] for _ in range(views)], []
    print(label, flush=True)
    for xb, yb in progress_bar(dl):
        for v in range(views):
            feats[v].append(model.features(xb.flip(3) if v else xb).float().numpy())
        targets.append(yb.numpy())
    return np.stack([np.concatenate(f) for f in feats]), np.concatenate(targets)


def _fit_logistic(x: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(x, y)


def choose_threshold(x_views: np.ndarray, y: np.ndarray, positive: int, c: float, seed: int) -> float:
    """The threshold on P(positive) that maximises F1 over out-of-fold predictions."""
    from sklearn.model_selection import StratifiedKFold

    is_pos = y == positive
    folds = min(5, int(is_pos.sum()), int((~is_pos).sum()))
    if folds < 2:
        return 0.5
    oof = np.zeros(len(y))
    for train_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x_views[0], is_pos):
        xs = np.concatenate([v[train_idx] for v in x_views])
        mean, std = xs.mean(0), xs.std(0) + 1e-6
        clf = _fit_logistic((xs - mean) / std, np.tile(is_pos[train_idx], len(x_views)), c)
        oof[test_idx] = clf.predict_proba((x_views[0][test_idx] - mean) / std)[:, 1]
    best, best_f1 = 0.5, -1.0
    for t in np.round(np.arange(0.2, 0.951, 0.025), 3):
        f1 = binary_metrics(is_pos, oof >= t)["f1"]
        if f1 > best_f1 + 1e-9 or (abs(f1 - best_f1) <= 1e-9 and abs(t - 0.5) < abs(best - 0.5)):
            best, best_f1 = float(t), f1
    return best


def fit_head(model: HuskyNet, x_views: np.ndarray, y: np.ndarray, n_classes: int, positive: int,
             c: float = 0.01, seed: int = 42, report=print) -> float:
    """Fit the linear head by logistic regression; returns the threshold folded into its bias."""
    xs = np.concatenate(list(x_views))
    ys = np.tile(y, len(x_views))
    mean, std = xs.mean(0), xs.std(0) + 1e-6
    model.feature_mean.copy_(torch.from_numpy(mean))
    model.feature_std.copy_(torch.from_numpy(std))
    clf = _fit_logistic((xs - mean) / std, ys, c)
    weight = torch.zeros_like(model.head.weight)
    bias = torch.zeros_like(model.head.bias)
    threshold = 0.5
    if n_classes == 2:
        threshold = choose_threshold(x_views, y, positive, c, seed)
        # softmax over [0, z] is sigmoid(z); shifting z by logit(t) moves the 0.5 point to t
        weight[positive] = torch.from_numpy(clf.coef_[0])
        bias[positive] = float(clf.intercept_[0]) - math.log(threshold / (1 - threshold))
    else:
        weight[torch.as_tensor(clf.classes_)] = torch.from_numpy(clf.coef_).float()
        bias[torch.as_tensor(clf.classes_)] = torch.from_numpy(clf.intercept_).float()
    model.head.weight.data.copy_(weight)
    model.head.bias.data.copy_(bias)
    report(f"head fitted by logistic regression on {len(ys)} feature vectors; "
           f"cross-validated threshold {threshold:.3f} folded into the bias")
    return threshold


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


def train(data: str | Path, out: str | Path = "export", arch: str = DEFAULT_ARCH, epochs: int = 0,
          size: int | None = None, positive: str = "husky", holdout: float = 0.0, valid_pct: float = 0.2,
          seed: int = 42, lr: float = 1e-4, weights: str | Path | None = None, batch_size: int = 32,
          c: float = 0.01, junk: int = 0, report=print) -> dict:
    """Train on ``data`` (one folder per label) and export to ``out``; returns the model card."""
    started = time.time()
    torch.manual_seed(seed)
    arch_info = get_arch(arch)
    size = size or arch_info.input_size
    photos: PhotoSet = scan(data, positive, report)
    kept, held = split_holdout(photos, holdout)
    report(f"{len(photos.samples)} photos {photos.counts()}, {len(photos.skipped)} skipped"
           + (f", {len(held)} held out for testing" if held else ""))
    backbone = load_pretrained(arch_info, weights)
    model = HuskyNet(backbone, n_classes=len(photos.classes))
    positive_idx = len(photos.classes) - 1
    with tempfile.TemporaryDirectory() as work:
        if junk:  # the junk attack's own images, as negatives: white, noise, patterns are not huskies
            kept = kept + _junk_samples(junk, Path(work) / "junk", photos.classes[0], seed)
            report(f"added {junk} generated junk images to '{photos.classes[0]}'")
        dls = make_dataloaders(kept, photos.classes, size, arch_info.mean, arch_info.std, valid_pct, seed,
                               batch_size)
        learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=[accuracy],
                        splitter=_backbone_and_head, path=Path(work))
        plain_train = dls.test_dl(dls.train.items, with_labels=True)
        x_views, y = extract_features(model, plain_train, label="training features")
        threshold = fit_head(model, x_views, y, len(photos.classes), positive_idx, c=c, seed=seed, report=report)
        if epochs > 0:
            counts = np.bincount(y, minlength=len(photos.classes))
            class_weights = torch.tensor(len(y) / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
            learn.loss_func = CrossEntropyLossFlat(weight=class_weights)
            learn.fit_one_cycle(epochs, lr_max=slice(lr, lr * 10), cbs=FrozenBatchNorm())
            learn.loss_func = CrossEntropyLossFlat()
        model.eval()
        out = Path(out).resolve()
        out.mkdir(parents=True, exist_ok=True)
        for name in (*artifacts.EXPORT_NAMES, artifacts.CARD_NAME):  # no file of an older model may linger
            (out / name).unlink(missing_ok=True)
        valid_probs, _ = learn.get_preds(dl=dls.valid.new(shuffle=False, drop_last=False))
        valid_probs = valid_probs.numpy()
        valid_m = _metrics_for(valid_probs, [label for _, label in dls.valid.items], photos.classes)
        report("validation: " + format_metrics(valid_m))
        save_confusion_matrix(valid_m, photos.classes, out / "confusion_matrix.png", "validation")
        save_top_losses(learn, valid_probs, out / "top_losses.png")
        metrics = {"validation": valid_m}
        if held:
            metrics["holdout"] = _metrics_for(_predict_items(learn, held), [s.label for s in held], photos.classes)
            report("holdout:    " + format_metrics(metrics["holdout"]))
        learn.export(out / artifacts.LEARNER_NAME)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / artifacts.WEIGHTS_NAME))
    card = {
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
            "data": str(Path(data).resolve().name),
            "data_fingerprint": photos.fingerprint(),
            "counts": photos.counts(),
            "skipped": [why for _, why in photos.skipped],
            "holdout_fraction": holdout,
            "holdout_files": sorted(f"{s.label}/{s.path.name}" for s in held),
            "valid_pct": valid_pct, "seed": seed, "epochs": epochs, "lr": lr, "head_c": c, "junk_negatives": junk,
            "pretrained_weights": str(weights) if weights else "default",
            "seconds": round(time.time() - started, 1),
        },
        "versions": _versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    card = artifacts.write_card(out, card)
    report(f"exported to {out} in {card['training']['seconds']} s: " + ", ".join(card["files"]))
    return card

