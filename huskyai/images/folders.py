"""Photo folders: the one scan of a folder's files, and folder-per-label photo sets (validate, split, fingerprint).

The scan never follows a symbolic link below the folder it is given: a linked folder is reported and not
entered, and a link named like a photo comes back with its refusal, never read. Each file found carries its
identity (device and inode), and is read later only through huskyai.images.decode.read_limited, which opens
no link and only the very file the scan found. So a folder from someone else cannot point a "photo" at a
secret (the signing key, a private folder) and have its bytes trained on, scored or hashed into a results
file. Training, the label doctor, evaluation and bulk scoring all scan this way.
"""

from __future__ import annotations

import hashlib
import os
import random
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from huskyai.errors import DataError, InvalidImageError
from huskyai.images.decode import decode_bytes, file_identity, read_limited

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")  # what bulk scoring looks for in a folder
Report = Callable[[str], None]


# ---- the scan -----------------------------------------------------------------------------------------------

class Photo(NamedTuple):
    """A photo file found by a scan: its path, the identity of the file found there, and any refusal."""

    path: str
    identity: str | None = None  # "device:inode" from lstat at scan time; None: the scan found nothing there
    refusal: str | None = None  # why the scan refused it (a symbolic link...): it is then never opened


def photo_name(path: str) -> bool:
    """Whether ``path`` is named like a photo (IMAGE_SUFFIXES)."""
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


def visible_name(path: str) -> bool:
    """Whether ``path``'s file name is not hidden (training takes every such file, and decoding judges it)."""
    return not os.path.basename(path).startswith(".")


def utf8_name(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # os.scandir hands undecodable bytes back as lone surrogates
        return False
    return True


def photo_entry(path: str, report: Report, *, named: bool, wanted: Callable[[str], bool] = photo_name) \
        -> Photo | None:
    """The Photo at ``path`` as lstat sees it, without following a link; None for what is not a photo here.
    ``named``: the user named this very file (a glob, a list), so a name ``wanted`` refuses gets a refusal
    instead of being passed over. A link named like a wanted file gets its refusal; a linked folder is reported."""
    if not utf8_name(path):
        report(f"skipped {path!r}: the file name is not valid UTF-8 (a results file or a model card cannot hold it)")
        return None
    name = os.path.basename(path)
    try:
        info = os.lstat(path)
    except OSError:
        return Photo(path)  # gone or unreadable: reading it gives the error
    if stat.S_ISLNK(info.st_mode):
        if os.path.isdir(path):
            report(f"skipped {path}: a symbolic link to a folder, not followed (name the folder itself to score it)")
            return None
        if not named and not wanted(path):
            return None
        return Photo(path, file_identity(info), f"{name}: a symbolic link, not followed (photos are never read "
                                                f"through links; name the file it points to)")
    if stat.S_ISDIR(info.st_mode):
        return None
    if not wanted(path):
        return Photo(path, file_identity(info), f"{name}: not named like a photo ({', '.join(IMAGE_SUFFIXES)}); "
                                                f"not read") if named else None
    if not stat.S_ISREG(info.st_mode) and not named:
        return None  # a FIFO or a device in a folder; one named by the user gets its refusal from the reader
    return Photo(path, file_identity(info))


def walk(root: str | os.PathLike, report: Report, wanted: Callable[[str], bool] = photo_name) -> list[Photo]:
    """Every file under ``root`` whose name ``wanted`` accepts, recursively, sorted by path. No linked folder
    below ``root`` is entered (each is reported); ``root`` itself is the caller's to name, even through a link."""
    found: list[Photo] = []
    folders = [os.fspath(root)]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as err:
            report(f"skipped {folder}: cannot list this folder ({err.strerror or err})")
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                folders.append(entry.path)
            elif photo := photo_entry(entry.path, report, named=False, wanted=wanted):
                found.append(photo)
    return sorted(found)


def subfolders(root: Path, report: Report) -> list[Path]:
    """``root``'s visible sub-folders, sorted; a linked one is reported and left out."""
    found = []
    with os.scandir(root) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                found.append(Path(entry.path))
            elif entry.is_symlink() and entry.is_dir():
                report(f"skipped {entry.path}: a symbolic link to a folder, not followed (name the folder itself)")
    return sorted(found)


# ---- folder-per-label photo sets ----------------------------------------------------------------------------

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
    folders: dict[str, Path] = field(default_factory=dict)  # each sample's source -> the folder it was found in

    def name(self, sample: Sample) -> str:
        """How a person finds the photo: <data folder>/<label>/<file> (sub-folders included)."""
        root = self.folders[sample.source]
        return f"{sample.source or root.resolve().name}/{sample.path.relative_to(root).as_posix()}"

    def counts(self) -> dict[str, int]:
        return {c: sum(s.label == c for s in self.samples) for c in self.classes}

    def fingerprint(self) -> str:
        """sha256 over every used file's class, name and content hash: names the training data."""
        digest = hashlib.sha256()
        for s in sorted(self.samples, key=lambda s: (s.label, s.path.name, s.source)):
            digest.update(f"{s.key}\t{s.sha256}\n".encode())
        return digest.hexdigest()


def scan(root: str | Path, positive: str = "husky", report: Report = print) -> PhotoSet:
    """Every readable photo under ``root/<label>/`` (every visible file; decoding judges it), by the one scan:
    unreadable files and links are reported and skipped."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected one sub-folder per label, e.g. husky/ and not_husky/)")
    folders = subfolders(root, report)
    names = [p.name for p in folders]
    if positive not in names:
        raise DataError(f"{root}: no '{positive}/' folder for the positive class (found: {', '.join(names) or 'none'})")
    if len(folders) < 2:
        raise DataError(f"{root}: only one class ('{positive}/'); add a folder of negatives such as not_husky/")
    classes = [n for n in names if n != positive] + [positive]
    samples, skipped = [], []
    for folder in folders:
        for photo in sorted(walk(folder, report, visible_name), key=lambda p: Path(p.path)):
            path = Path(photo.path)
            try:
                if photo.refusal is not None:
                    raise InvalidImageError(photo.refusal)
                data = read_limited(path, identity=photo.identity)
                decode_bytes(data, path.name)
            except InvalidImageError as err:
                skipped.append((path, str(err)))
                report(f"skipped {path}: {str(err).removeprefix(path.name + ': ')}")
                continue
            samples.append(Sample(path, folder.name, hashlib.sha256(data).hexdigest()))
    photo_set = PhotoSet(root, classes, samples, skipped, {"": root})
    empty = [c for c, n in photo_set.counts().items() if n == 0]
    if empty:
        raise DataError(f"{root}: no usable photos in {', '.join(c + '/' for c in empty)}")
    return photo_set


def scan_many(roots: str | Path | Iterable[str | Path], positive: str = "husky", report: Report = print,
              same_names: str = "refuse") -> PhotoSet:
    """Several photo folders as one set (e.g. dataset crops and web photos); each sample keeps its
    folder's name as ``source`` so errors and metrics can be told apart by source. Two folders of one name
    are refused (``same_names="refuse"``: a source must be the same on every machine), or told apart by
    their full paths (``same_names="full path"``: the label doctor's names, for a person to read)."""
    roots = [Path(r) for r in ([roots] if isinstance(roots, (str, Path)) else roots)]
    if not roots:
        raise DataError("no data folder given")
    sets = [scan(r, positive, report) for r in roots]
    if len(sets) == 1:
        return sets[0]
    names = [r.resolve().name for r in roots]
    if len(set(names)) < len(names):
        if same_names == "refuse":
            raise DataError(f"data folders need distinct names to tell their photos apart: {', '.join(names)}")
        names = [str(r.resolve()) for r in roots]
    negatives = sorted({c for ps in sets for c in ps.classes if c != positive})
    samples = [Sample(s.path, s.label, s.sha256, name) for name, ps in zip(names, sets) for s in ps.samples]
    skipped = [item for ps in sets for item in ps.skipped]
    return PhotoSet(roots[0], [*negatives, positive], samples, skipped, dict(zip(names, roots)))


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
