"""Label doctor: rank the photos whose labels look wrong, for a person to look at.

The same features training fits its head on (huskyai.training.head.extract_features), the same
class-balanced logistic-regression head, fitted k times so that every photo gets a probability from
a head that never saw it (out of fold); then cleanlab's confident learning
(``cleanlab.filter.find_label_issues``) picks the photos whose given label disagrees with those
probabilities beyond each class's own noise level, ranked by self-confidence (the out-of-fold
probability of the label the photo was given; lowest first).

Nothing is relabelled here. Training may leave out what the doctor flags (``suspects_to_drop``), and
then its card lists what was left out. fastai users know the idea as ``ImageClassifierCleaner``;
here it is a command (``python -m huskyai doctor DIR``) and a contact sheet.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from huskyai.errors import DataError
from huskyai.extras import require
from huskyai.images.folders import Sample, scan_many
from huskyai.training.config import FILTERS, DoctorConfig


@dataclass
class Suspect:
    rank: int  # 1 = the most suspicious
    name: str  # how a person finds the photo: <data folder>/<label>/<file>
    path: Path
    label: str  # the label it was given (its folder)
    suggested: str  # the most probable other label, out of fold
    self_confidence: float  # out-of-fold probability of the given label
    fine_class: str | None = None  # from the data folder's MANIFEST.tsv, when it has one
    poison_score: float | None = None  # flagged by the poison check: spectral score over its label's median

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        d["self_confidence"] = round(self.self_confidence, 6)
        d["poison_score"] = None if self.poison_score is None else round(self.poison_score, 3)
        return d


def out_of_fold_probabilities(x_views: np.ndarray, y: np.ndarray, n_classes: int, folds: int = 5,
                              seed: int = 42, c: float = 0.01, groups: list[str] | None = None) -> np.ndarray:
    """(N, n_classes) probabilities, each row from a head fitted without that photo.

    ``x_views`` is (views, N, features) as ``extract_features`` returns it: each fold's head is fitted
    on every view of its training photos (as training does) and scores the plain view of the rest.
    ``groups`` (e.g. content hashes) keeps identical photos in one fold, so a copy cannot vouch for itself."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    from huskyai.training.head import fit_logistic as _fit_logistic

    y = np.asarray(y)
    smallest = int(np.bincount(y, minlength=n_classes)[np.unique(y)].min())
    folds = min(folds, smallest)
    if folds < 2 or len(np.unique(y)) < 2:
        raise DataError("label checking needs at least 2 photos in each of at least 2 classes")
    if groups is not None and len(set(groups)) < len(groups):
        splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(x_views[0], y, groups)
    else:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed).split(x_views[0], y)
    probs = np.zeros((len(y), n_classes))
    for train_idx, test_idx in splitter:
        xs = np.concatenate([v[train_idx] for v in x_views])
        mean, std = xs.mean(0), xs.std(0) + 1e-6  # standardised as fit_head does
        clf = _fit_logistic((xs - mean) / std, np.tile(y[train_idx], len(x_views)), c)
        probs[np.ix_(test_idx, clf.classes_)] = clf.predict_proba((x_views[0][test_idx] - mean) / std)
    return probs


def rank_label_issues(y: np.ndarray, pred_probs: np.ndarray, filter_by: str = "prune_by_noise_rate") -> np.ndarray:
    """Indices of the photos cleanlab flags, most suspicious (lowest self-confidence) first.

    ``filter_by`` is cleanlab's: the default estimates how many labels are wrong from the confident joint
    and flags that many; on a few dozen photos it can flag fewer than are plainly wrong, and
    "predicted_neq_given" flags every photo whose out-of-fold answer differs from its label."""
    from cleanlab.filter import find_label_issues

    if filter_by not in FILTERS:
        raise ValueError(f"filter_by must be one of {', '.join(FILTERS)}, not {filter_by!r}")
    return find_label_issues(np.asarray(y), pred_probs, filter_by=filter_by,
                             return_indices_ranked_by="self_confidence", n_jobs=1)


def suspects_from_features(x_views: np.ndarray, y: np.ndarray, samples: list[Sample], classes: list[str],
                           names: list[str] | None = None, folds: int = 5, seed: int = 42, c: float = 0.01,
                           fine_classes: dict[Path, str] | None = None,
                           filter_by: str = "prune_by_noise_rate", poison_fraction: float = 0.0) -> list[Suspect]:
    """The doctor's verdict from features already extracted (training has them: no second pass): cleanlab's
    label issues by self-confidence, then (with ``poison_fraction``) the poison check's other suspects, by score."""
    from huskyai.training.poisoncheck import poison_flags

    y = np.asarray(y)
    probs = out_of_fold_probabilities(x_views, y, len(classes), folds, seed, c, [s.sha256 for s in samples])
    poison = poison_flags(x_views[0], y, poison_fraction) if poison_fraction else {}
    issues = [int(i) for i in rank_label_issues(y, probs, filter_by)]
    order = issues + sorted(set(poison) - set(issues), key=lambda i: -poison[i])
    names = names or [str(s.path) for s in samples]
    fine_classes = fine_classes or {}
    suspects = []
    for rank, i in enumerate(order, start=1):
        others = probs[i].copy()
        others[y[i]] = -1.0  # the suggestion is never the label it already has
        suspects.append(Suspect(rank, names[i], samples[i].path, classes[y[i]], classes[int(others.argmax())],
                                float(probs[i, y[i]]), fine_classes.get(samples[i].path), poison.get(i)))
    return suspects


def _fine_classes(root: Path) -> dict[Path, str]:
    """fine_class per file from ``root/MANIFEST.tsv`` (columns file and fine_class), if there is one."""
    manifest = root / "MANIFEST.tsv"
    if not manifest.is_file():
        return {}
    try:
        with open(manifest, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    return {root / r["file"]: r["fine_class"] for r in rows if r.get("file") and r.get("fine_class")}


def find_suspects(data: str | Path | list, report=print, **options) -> list[Suspect]:
    """Photos under ``data`` (a folder per label, or a list of such folders) whose labels look wrong,
    most suspicious first. Unreadable files are reported and skipped, as in training. ``options`` are
    DoctorConfig's fields (``folds=5``, ``filter_by=...``, the backbone's)."""
    config = DoctorConfig(**options)
    require("train", "the label doctor")
    if config.filter_by not in FILTERS:  # before minutes of feature extraction, not after
        raise ValueError(f"filter_by must be one of {', '.join(FILTERS)}, not {config.filter_by!r}")
    if not 0 <= config.poison_fraction <= 1:
        raise ValueError(f"poison_fraction must be between 0 (no check) and 1, not {config.poison_fraction}")
    started = time.time()
    # the one folder scan, before torch loads; with several folders a photo is named <folder>/<label>/<file>, so
    # equal file names cannot clash, and two folders of one name are told apart by their full paths
    photos = scan_many(data, config.positive, report, same_names="full path")
    samples, classes, names = photos.samples, photos.classes, [photos.name(s) for s in photos.samples]
    fine = {path: cls for root in photos.folders.values() for path, cls in _fine_classes(root).items()}
    counts = photos.counts()
    report(f"{len(samples)} photos {counts}, {len(photos.skipped)} skipped")
    x_views, y = _features(samples, classes, config)
    print(flush=True)  # fastprogress leaves its bar's line open
    suspects = suspects_from_features(x_views, y, samples, classes, names, config.folds, config.seed, config.c, fine,
                                      config.filter_by, config.poison_fraction)
    poisoned = sum(s.poison_score is not None for s in suspects)
    report(f"{len(suspects) - poisoned if config.poison_fraction else len(suspects)} of {len(samples)} photos "
           f"flagged as possibly mislabelled ({min(config.folds, min(counts.values()))}-fold out-of-fold "
           f"probabilities, cleanlab)" + (f", {poisoned} as possibly planted (spectral signatures, "
                                          f"{config.poison_fraction:g} of each label suspected)" if poisoned else "")
           + f", in {time.time() - started:.0f} s")
    return suspects


def _features(samples: list[Sample], classes: list[str], config: DoctorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Every photo through the pretrained backbone in the plain (validation-mode) pipeline, in sample order."""
    import torch

    from huskyai.network.backbones import load_pretrained
    from huskyai.network.net import HuskyNet
    from huskyai.training.dataloaders import make_dataloaders
    from huskyai.training.head import extract_features

    torch.manual_seed(config.seed)
    arch, size = config.backbone()
    model = HuskyNet(load_pretrained(arch, config.weights), n_classes=len(classes))
    dls = make_dataloaders(samples, classes, size, arch.mean, arch.std, seed=config.seed,
                           batch_size=config.batch_size)
    plain = dls.test_dl([[str(s.path), s.label] for s in samples], with_labels=True)
    return extract_features(model, plain, label=f"features of {len(samples)} photos at {size} px")


def suspects_to_drop(suspects: list[Suspect], n_photos: int, max_fraction: float = 0.05) -> list[Suspect]:
    """The top-ranked suspects, at most ``max_fraction`` of ``n_photos``: what training may leave out.

    A cap, because confident learning also flags photos that are merely hard (a husky in a wide scene),
    and leaving all of those out would teach the model that hard photos do not exist."""
    if not 0 <= max_fraction <= 1:
        raise ValueError(f"max_fraction must be between 0 and 1, not {max_fraction}")
    return sorted(suspects, key=lambda s: s.rank)[: int(n_photos * max_fraction)]


def suspects_json(suspects: list[Suspect]) -> str:
    return json.dumps([s.to_dict() for s in suspects], indent=2)


def format_table(suspects: list[Suspect]) -> str:
    if not suspects:
        return "no label issues found"
    width = max(len(s.name) for s in suspects)
    lines = [f"{'rank':>4}  {'photo':<{width}}  {'given':<10} {'suggested':<10} {'p(given)':>8}  {'poison':>7}  "
             "fine_class"]
    for s in suspects:  # poison: the spectral score over its label's median, when the poison check flags it
        poison = "" if s.poison_score is None else f"{s.poison_score:.1f}x"
        lines.append(f"{s.rank:>4}  {s.name:<{width}}  {s.label:<10} {s.suggested:<10} "
                     f"{s.self_confidence:>8.3f}  {poison:>7}  {s.fine_class or ''}")
    return "\n".join(lines)


SHEET_LIMIT = 60  # photos on the doctor's contact sheet


def save_suspect_sheet(suspects: list[Suspect], path: str | Path, limit: int = SHEET_LIMIT) -> Path:
    """A contact sheet of the top ``limit`` suspects: photo, rank, name, given label and p(given), and
    the poison check's score where it flagged the photo."""
    from huskyai.evaluation.sheets import contact_sheet

    planted = sum(s.poison_score is not None for s in suspects)
    title = (f"{len(suspects)} photos whose labels look wrong (out-of-fold p(given label), cleanlab"
             + (f"; {planted} possibly planted, spectral signatures" if planted else "")
             + "), most suspicious first" + (f"; top {limit} shown" if len(suspects) > limit else ""))
    tiles = [(s.path, [(f"#{s.rank} ", s.name, "black"), ("", f"given {s.label}  p={s.self_confidence:.3f}",
                                                                 "firebrick")]
              + ([("", f"planted? poison score {s.poison_score:.1f}x", "purple")] if s.poison_score is not None
                 else []) + [("", s.fine_class or "", "dimgray")])
             for s in suspects[:limit]]
    return contact_sheet(tiles, path, title if tiles else "no label issues found")
