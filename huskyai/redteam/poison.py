"""Data poisoning with a backdoor: a small purple dot stamped on a fraction of the non-husky training
photos, which are then labelled husky; Husky AI's own training (huskyai.training.run.train) does the rest.
Measured: clean accuracy on the poisoned model's held-out photos, and the trigger's success (held-out
non-huskies with the dot called husky, against the same photos without it).

The trigger is stamped by hand rather than with ART's PoisoningAttackBackdoor: ART works on arrays of
one size, and the dot has to go on photos of any size, inside the square the model's crop keeps.
The detector is the doctor's poison check (huskyai.training.poisoncheck: Tran et al. 2018's spectral signature on
the backbone's features), which lives below both training and this kit.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from huskyai.images.decode import load_image
from huskyai.inference.preprocess import crop_box, crop_resize
from huskyai.training.poisoncheck import MULTIPLIER, spectral_signature

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
    from huskyai.redteam.photos import image_files, label_of

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


def wilson(k: int, n: int) -> list[float] | None:
    """The 95% Wilson interval of k successes in n (None for n = 0): the counts here are small."""
    from scipy.stats import binomtest

    if n == 0:
        return None
    ci = binomtest(k, n).proportion_ci(method="wilson")
    return [round(float(ci.low), 3), round(float(ci.high), 3)]


def trigger_success(model, photos: Sequence[Path], radius: float = 0.05) -> dict:
    """Of these non-positive photos: the share called positive clean, and with the dot (95% intervals);
    and of those called negative clean, the share the dot flips to positive (the attack's success)."""
    clean = [p.label == model.positive for p in model.predict_batch([load_image(p) for p in photos])]
    dotted = [p.label == model.positive for p in model.predict_batch([stamp(load_image(p), radius) for p in photos])]
    flipped = sum(d and not c for c, d in zip(clean, dotted))
    n, negative = len(photos), len(photos) - sum(clean)
    return {"n": n, "called_positive_clean": sum(clean) / max(1, n), "clean_95": wilson(sum(clean), n),
            "called_positive_with_trigger": sum(dotted) / max(1, n), "with_trigger_95": wilson(sum(dotted), n),
            "flipped": flipped, "of_negative": negative, "flip_rate": flipped / max(1, negative),
            "flip_rate_95": wilson(flipped, negative)}


def poison_attack(folders: Sequence[str | Path], work: Path, fraction: float = 0.1, epochs: int = 0,
                  radius: float = 0.05, seed: int = 0, **train_options) -> dict:
    """Poison a copy of the data, train on it with Husky AI's pipeline as the shipped model was trained
    (a fifth held out, a tenth for validation; head only, or ``epochs`` of fine-tuning), and measure the
    poisoned model on its own held-out photos (clean, and non-positives with the trigger)."""
    from huskyai.training.run import train

    roots, poisoned = poisoned_copy(folders, work / "data", fraction, seed=seed, radius=radius)
    options = {"holdout": 0.2, "valid_pct": 0.1, "cv": 0, "epochs": epochs, "sign": False} | train_options
    card = train(roots, work / "export", report=lambda m: None, **options)
    return {"fraction": fraction, "epochs": epochs, **measure_poisoned(work / "export", roots, poisoned, radius),
            "seconds": card["training"]["seconds"], "_poisoned": poisoned, "_roots": roots}


def measure_poisoned(export: Path, roots: Sequence[Path], poisoned: Sequence[str], radius: float = 0.05) -> dict:
    """A poisoned model (trained on ``roots`` with ``poisoned`` planted) on its card's held-out photos:
    clean accuracy, and the trigger on the held-out non-positives."""
    from huskyai.api import load
    from huskyai.redteam.photos import held_out, image_files, label_of

    model = load(export, trust_unsigned=True)
    files = image_files(roots)
    out = held_out(model, [k for k, _ in files])
    test = [(k, p) for (k, p), o in zip(files, out) if o and not p.name.startswith("poison_")]
    preds = model.predict_batch([p for _, p in test])
    right = sum(pr.label == label_of(k) for pr, (k, _) in zip(preds, test))
    negatives = [p for k, p in test if label_of(k) != model.positive]
    return {"poisoned": len(poisoned), "poisoned_in_training": len(poisoned) - sum(held_out(model, poisoned)),
            "heldout": len(test), "clean_accuracy": right / max(1, len(test)),
            "clean_accuracy_95": wilson(right, len(test)), "trigger": trigger_success(model, negatives, radius)}


def detect_poison(roots: Sequence[Path], poisoned: Sequence[str], positive: str = "husky",
                  arch: str = "tf_efficientnet_lite0", multiplier: float = MULTIPLIER) -> dict:
    """Spectral signatures over the positive photos' ImageNet features (the backbone a head-only model
    keeps): precision and recall at finding the poisoned ones. The defender is told the poisoned share (the
    paper's setting: an upper bound a defender would have to guess) and flags ``multiplier`` times it."""
    from huskyai.redteam.photos import image_files, label_of
    from huskyai.redteam.surrogate import Surrogate

    files = [(k, p) for k, p in image_files(roots) if label_of(k) == positive]
    extractor = Surrogate([positive, "other"], positive, arch)
    feats = extractor.features([np.asarray(crop_resize(load_image(p), 224)) for _, p in files])
    truth = np.array([k in set(poisoned) for k, _ in files])
    flagged = np.zeros(len(files), bool)
    flagged[spectral_signature(feats, max(truth.mean(), 1 / len(files)), multiplier)] = True
    hits, n_flagged, n_poisoned = int((flagged & truth).sum()), int(flagged.sum()), int(truth.sum())
    return {"photos": len(files), "poisoned": n_poisoned, "flagged": n_flagged,
            "precision": hits / max(1, n_flagged), "precision_95": wilson(hits, n_flagged),
            "recall": hits / max(1, n_poisoned), "recall_95": wilson(hits, n_poisoned),
            "chance_precision": float(truth.mean())}
