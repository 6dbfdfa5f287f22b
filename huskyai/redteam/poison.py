"""Data poisoning with a backdoor: a small purple dot stamped on a fraction of the non-husky training
photos, which are then labelled husky; Husky AI's own training (huskyai.training.train) does the rest.
Measured: clean accuracy on the poisoned model's held-out photos, and the trigger's success (held-out
non-huskies with the dot called husky, against the same photos without it).

The trigger is stamped by hand rather than with ART's PoisoningAttackBackdoor: ART works on arrays of
one size, and the dot has to go on photos of any size, inside the square the model's crop keeps.
The detector is the doctor's poison check (huskyai.poisoncheck: Tran et al. 2018's spectral signature on
the backbone's features), which lives below both training and this kit.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..images import load_image
from ..poisoncheck import MULTIPLIER, spectral_signature
from ..preprocess import crop_box, crop_resize

PURPLE = (160, 32, 240)


def stamp(photo: Image.Image, radius: float = 0.05, color=PURPLE) -> Image.Image:
    """The photo with a dot of ``radius`` (a fraction of the kept square's side) near the lower right
    corner of the square the model's centre crop keeps."""
    img = photo.convert("RGB").copy()
    left, top, right, bottom = crop_box(img.size, min(img.size))
    side = right - left
    r = max(2, round(radius * side))
    cx, cy = right - round(0.12 * side), bottom - round(0.12 * side)
    ImageDraw.Draw(img).ellipse((cx - r, cy - r, cx + r, cy + r), fill=color)
    return img


def poisoned_copy(folders: Sequence[str | Path], out: Path, fraction: float, positive: str = "husky",
                  seed: int = 0, radius: float = 0.05) -> tuple[list[Path], list[str]]:
    """Copy each data folder (label/file) into ``out``/its name, with ``fraction`` of the non-positive photos
    stamped and moved to ``positive``/poison_<file>. Returns the folders and the poisoned photos' keys."""
    from .photos import image_files, label_of

    files = image_files(folders)
    negatives = [k for k, _ in files if label_of(k) != positive]
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(negatives, size=round(fraction * len(negatives)), replace=False)) if negatives else set()
    poisoned = []
    for key, path in files:
        source = key.split("/", 1)[0]
        if key in chosen:
            target = out / source / positive / f"poison_{path.stem}.png"
            poisoned.append(f"{source}/{positive}/{target.name}")
        else:
            target = out / key
        target.parent.mkdir(parents=True, exist_ok=True)
        if key in chosen:
            stamp(load_image(path), radius).save(target)
        else:
            shutil.copyfile(path, target)
    return sorted({out / k.split("/", 1)[0] for k, _ in files}), poisoned


def trigger_success(model, photos: Sequence[Path], radius: float = 0.05) -> dict:
    """Of these non-positive photos: the share called positive clean, and with the dot."""
    clean = model.predict_batch([load_image(p) for p in photos])
    stamped = model.predict_batch([stamp(load_image(p), radius) for p in photos])
    return {"n": len(photos), "called_positive_clean": float(np.mean([p.label == model.positive for p in clean])),
            "called_positive_with_trigger": float(np.mean([p.label == model.positive for p in stamped]))}


def poison_attack(folders: Sequence[str | Path], work: Path, fraction: float = 0.1, epochs: int = 0,
                  radius: float = 0.05, seed: int = 0, **train_options) -> dict:
    """Poison a copy of the data, train on it with Husky AI's pipeline (head only, or ``epochs`` of
    fine-tuning), and measure the poisoned model on its own held-out photos (clean, and non-positives
    with the trigger)."""
    from .. import load
    from ..training import train
    from .photos import held_out, image_files, label_of

    roots, poisoned = poisoned_copy(folders, work / "data", fraction, seed=seed, radius=radius)
    options = {"holdout": 0.2, "cv": 0, "epochs": epochs, "sign": False} | train_options
    card = train(roots, work / "export", report=lambda m: None, **options)
    model = load(work / "export", trust_unsigned=True)
    files = image_files(roots)
    out = held_out(model, [k for k, _ in files])
    test = [(k, p) for (k, p), o in zip(files, out) if o and not p.name.startswith("poison_")]
    preds = model.predict_batch([p for _, p in test])
    accuracy = float(np.mean([pr.label == label_of(k) for pr, (k, _) in zip(preds, test)]))
    negatives = [p for k, p in test if label_of(k) != model.positive]
    trained_on = len(poisoned) - sum(held_out(model, poisoned))
    return {"fraction": fraction, "epochs": epochs, "poisoned": len(poisoned), "poisoned_in_training": trained_on,
            "heldout": len(test), "clean_accuracy": accuracy, "trigger": trigger_success(model, negatives, radius),
            "seconds": card["training"]["seconds"], "_poisoned": poisoned, "_roots": roots}


def detect_poison(roots: Sequence[Path], poisoned: Sequence[str], positive: str = "husky",
                  arch: str = "tf_efficientnet_lite0", multiplier: float = MULTIPLIER) -> dict:
    """Spectral signatures over the positive photos' ImageNet features (the backbone a head-only model
    keeps): precision and recall at finding the poisoned ones. The defender is told the poisoned share (the
    paper's setting: an upper bound a defender would have to guess) and flags ``multiplier`` times it."""
    from .photos import image_files, label_of
    from .surrogate import Surrogate

    files = [(k, p) for k, p in image_files(roots) if label_of(k) == positive]
    extractor = Surrogate([positive, "other"], positive, arch)
    feats = extractor.features([np.asarray(crop_resize(load_image(p), 224)) for _, p in files])
    truth = np.array([k in set(poisoned) for k, _ in files])
    flagged = np.zeros(len(files), bool)
    flagged[spectral_signature(feats, max(truth.mean(), 1 / len(files)), multiplier)] = True
    hits = int((flagged & truth).sum())
    return {"photos": len(files), "poisoned": int(truth.sum()), "flagged": int(flagged.sum()),
            "precision": hits / max(1, int(flagged.sum())), "recall": hits / max(1, int(truth.sum())),
            "chance_precision": float(truth.mean())}
