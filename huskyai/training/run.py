"""A training run, top to bottom: photos -> Learner -> features -> head -> (fine-tune) -> metrics -> export/.

The recipe, chosen by measurement (docs/model-quality.md):
1. a pretrained backbone, its pooled features, its 1000 ImageNet log-probabilities and five zero-shot
   husky scores (huskyai.network.net), in a fastai Learner (huskyai.training.finetune, huskyai.training.dataloaders);
2. a head fitted by class-balanced logistic regression on two views of every training photo (as is
   and mirrored), a zero-shot stage on its out-of-fold logits, and the threshold folded into the
   bias (huskyai.training.head);
3. optionally ``epochs`` of fastai ``fit_one_cycle`` over the whole network, at a low rate;
4. validation metrics, optional repeated cross-validation (huskyai.training.validation), plots and the
   export (huskyai.training.writer).
The photos are scanned before torch and fastai are imported: a bad folder fails in a second, not 15.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from huskyai.errors import DataError
from huskyai.extras import require
from huskyai.images.folders import PhotoSet, Sample, scan_many, split_holdout
from huskyai.training.config import TrainConfig
from huskyai.trust import exports, writer


def train(data: str | Path | list[str | Path], out: str | Path, report=print, replace_shipped: bool = False,
          **options) -> dict:
    """Train on ``data`` (a folder with one sub-folder per label, or several such folders), export to
    ``out`` and return the model card. ``options`` are TrainConfig's fields, e.g. ``epochs=3``. The shipped
    model's folder is refused as ``out`` unless ``replace_shipped``: writing there breaks its pin."""
    config = TrainConfig(**options)
    if not replace_shipped:
        refuse_shipped(out)
    require("train", "training")
    if Path(out).is_dir():  # a link planted in ``out`` is refused now, not after the training it would waste
        writer.check_destinations(Path(out), writer.NAMES)
    started = time.time()
    photos = scan_many(data, config.positive, report)
    kept, held = split_holdout(photos, config.holdout)
    report(f"{len(photos.samples)} photos {photos.counts()}, {len(photos.skipped)} skipped"
           + (f", {len(held)} held out for testing" if held else ""))

    # torch and fastai, only now that the photos are known to be usable
    from huskyai.training.dataloaders import input_std
    from huskyai.training.finetune import fine_tune, new_learner
    from huskyai.training.head import extract_features, fit_head
    from huskyai.training.validation import cross_validate_head, validate
    from huskyai.training.writer import model_card, write_export

    with tempfile.TemporaryDirectory() as work:
        if config.junk:  # the junk attack's own images, as negatives: white, noise, patterns are not huskies
            kept = kept + _junk_samples(photos, config, Path(work) / "junk", report)
        learn = new_learner(kept, photos.classes, config, Path(work))
        plain_train = learn.dls.test_dl(learn.dls.train.items, with_labels=True)  # no augmentation
        noise = config.noise_sigma / input_std(learn.dls) if config.noise_sigma else None
        x_views, y = extract_features(learn.model, plain_train, label="training features", noise=noise)
        threshold = fit_head(learn.model, x_views, y, len(photos.classes), len(photos.classes) - 1, c=config.c,
                             seed=config.seed, report=report)
        cv = cross_validate_head(learn, x_views, y, kept, config.cv, config.c, config.seed, report) if config.cv else {}
        fine_tune(learn, y, config.epochs, config.lr, config.noise_sigma)
        valid_probs, metrics = validate(learn, held, report)
        card = model_card(learn, photos, data, held, config, threshold, metrics | cv, time.time() - started)
        card = write_export(out, learn, card, valid_probs, config, report)
    report(f"exported to {Path(out).resolve()} in {card['training']['seconds']} s: " + ", ".join(card["files"]))
    return card


def refuse_shipped(out: str | Path) -> None:
    """DataError if ``out`` is the shipped model's folder: the package pins that card's sha256, so a model
    written there is refused by huskyai.load() (or, once re-pinned, replaces the model every user gets)."""
    if Path(out).resolve() == exports.DEFAULT_EXPORT.resolve():
        raise DataError(f"{out} is the shipped model's folder ({exports.DEFAULT_EXPORT}); training there replaces "
                        "the model the package pins, which huskyai.load() then refuses. Name another --out "
                        "(the default is a new runs/husky-<date>-<time>), or pass --replace-shipped "
                        "(replace_shipped=True) if you mean to rebuild the shipped model and update its pin")


def _junk_samples(photos: PhotoSet, config: TrainConfig, folder: Path, report=print) -> list[Sample]:
    """``config.junk`` generated junk images, written to ``folder``, labelled as the first negative class."""
    from huskyai.training.junk import junk_images

    folder.mkdir(parents=True)
    label, seed = photos.classes[0], config.seed + 1
    samples = []
    for i, (kind, img) in enumerate(junk_images(config.junk, seed=seed)):
        path = folder / f"junk_{i:05d}_{kind}.png"
        img.save(path)
        samples.append(Sample(path, label, f"junk-{seed}-{i}"))
    report(f"added {config.junk} generated junk images to '{label}'")
    return samples
