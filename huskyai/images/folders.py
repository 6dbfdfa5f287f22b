"""Folder-per-label photo sets: scan, validate, split, fingerprint, and fastai DataLoaders."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

from huskyai.errors import DataError, InvalidImageError
from huskyai.images.decode import decode_bytes, read_limited


@dataclass
class Sample:
    path: Path
    label: str
    sha256: str
    source: str = ""  # the data folder's name when several are combined

    @property
    def key(self) -> str:
        """A name for the photo that is the same on every machine: [source/]label/file."""
        return f"{self.source + '/' if self.source else ''}{self.label}/{self.path.name}"


@dataclass
class PhotoSet:
    root: Path
    classes: list[str]  # negatives first, the positive class last
    samples: list[Sample]
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason)

    def counts(self) -> dict[str, int]:
        return {c: sum(s.label == c for s in self.samples) for c in self.classes}

    def fingerprint(self) -> str:
        """sha256 over every used file's class, name and content hash: names the training data."""
        digest = hashlib.sha256()
        for s in sorted(self.samples, key=lambda s: (s.label, s.path.name, s.source)):
            digest.update(f"{s.key}\t{s.sha256}\n".encode())
        return digest.hexdigest()


def scan(root: str | Path, positive: str = "husky", report=print) -> PhotoSet:
    """Every readable photo under ``root/<label>/``; unreadable files are reported and skipped."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected one sub-folder per label, e.g. husky/ and not_husky/)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = [p.name for p in folders]
    if positive not in names:
        raise DataError(f"{root}: no '{positive}/' folder for the positive class (found: {', '.join(names) or 'none'})")
    if len(folders) < 2:
        raise DataError(f"{root}: only one class ('{positive}/'); add a folder of negatives such as not_husky/")
    classes = [n for n in names if n != positive] + [positive]
    samples, skipped = [], []
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            try:
                data = read_limited(path)
                decode_bytes(data, path.name)
            except InvalidImageError as err:
                skipped.append((path, str(err)))
                report(f"skipped {path}: {str(err).removeprefix(path.name + ': ')}")
                continue
            samples.append(Sample(path, folder.name, hashlib.sha256(data).hexdigest()))
    photo_set = PhotoSet(root, classes, samples, skipped)
    empty = [c for c, n in photo_set.counts().items() if n == 0]
    if empty:
        raise DataError(f"{root}: no usable photos in {', '.join(c + '/' for c in empty)}")
    return photo_set


def scan_many(roots: str | Path | list, positive: str = "husky", report=print) -> PhotoSet:
    """Several photo folders as one set (e.g. dataset crops and web photos); each sample keeps its
    folder's name as ``source`` so errors and metrics can be told apart by source."""
    roots = [Path(r) for r in ([roots] if isinstance(roots, (str, Path)) else roots)]
    sets = [scan(r, positive, report) for r in roots]
    if len(sets) == 1:
        return sets[0]
    names = [r.resolve().name for r in roots]
    if len(set(names)) < len(names):
        raise DataError(f"data folders need distinct names to tell their photos apart: {', '.join(names)}")
    negatives = sorted({c for ps in sets for c in ps.classes if c != positive})
    samples = [Sample(s.path, s.label, s.sha256, name) for name, ps in zip(names, sets) for s in ps.samples]
    skipped = [item for ps in sets for item in ps.skipped]
    return PhotoSet(roots[0], [*negatives, positive], samples, skipped)


def _bucket(sample: Sample, salt: str) -> float:
    """A stable number in [0, 1) per file, independent of machine and listing order."""
    h = hashlib.sha256(f"{salt}:{sample.key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_holdout(photo_set: PhotoSet, fraction: float,
                  salt: str = "huskyai-holdout") -> tuple[list[Sample], list[Sample]]:
    """(kept, held out): a deterministic, per-class split by file name, for an honest test set."""
    if fraction <= 0:
        return list(photo_set.samples), []
    kept, held = [], []
    for cls in photo_set.classes:
        members = sorted((s for s in photo_set.samples if s.label == cls), key=lambda s: _bucket(s, salt))
        n_held = round(len(members) * fraction)
        held += members[:n_held]
        kept += members[n_held:]
    return kept, held


def stratified_valid_indices(labels: list[str], valid_pct: float, seed: int) -> list[int]:
    """Indices of a seeded validation split that keeps every class's share (1:9 data needs it)."""
    rng = random.Random(seed)
    chosen = []
    for cls in sorted(set(labels)):
        idx = [i for i, label in enumerate(labels) if label == cls]
        rng.shuffle(idx)
        chosen += idx[: max(1, round(len(idx) * valid_pct))] if len(idx) > 1 else []
    return sorted(chosen)
