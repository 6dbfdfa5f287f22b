"""Exports on the Hugging Face Hub: ``hf://OWNER/NAME@REVISION`` fetched through ``huggingface_hub``, and read
from its cache without following a link out of it.

``fetch`` asks ``snapshot_download`` for the export's known file names only (``allow_patterns``), so nothing
else in the repository (a pickle, a script) is ever downloaded; online it resolves the revision to a commit
on the Hub, offline (``HF_HUB_OFFLINE=1``) through the cache's ``refs/``. It returns the commit's snapshot
folder, which is then read and verified like any export folder (huskyai.trust.exports).

The cache keeps each repository as ``models--OWNER--NAME/{refs/REVISION, blobs/ETAG,
snapshots/COMMIT/FILE -> ../../blobs/ETAG}``: a snapshot's files are symlinks into ``blobs/``. An export's
files are otherwise never read through a link, so ``open_linked`` admits exactly that shape and nothing
else: a link whose text is ``../../blobs/<hex>``, in a folder that is itself ``snapshots/<commit>`` of a
``models--*`` folder, is opened as that blob, relative to the repository folder reached from the snapshot's
own open descriptor, each step without following a link. A link pointing anywhere else (out of the cache,
to another snapshot, through another link) is refused.

``huggingface_hub`` reads its own variables (HF_HUB_OFFLINE, HF_HUB_CACHE, HF_HOME, HF_TOKEN); it is
imported only when the Hub is used, so loading a local export does not pay for it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from huskyai.errors import IntegrityError

SCHEME = "hf://"
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID = re.compile(rf"{_NAME}/{_NAME}")
_REVISION = re.compile(r"[A-Za-z0-9._/-]{1,200}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_BLOB_LINK = re.compile(r"\.\./\.\./blobs/([0-9a-f]{40}|[0-9a-f]{64})")  # etag: git sha1, or LFS sha256
_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def is_hub(source: object) -> bool:
    """Whether ``source`` names a Hub model (``hf://...``)."""
    return isinstance(source, str) and source.startswith(SCHEME)


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is OWNER/NAME as the Hub spells it (letters, digits, ``.``, ``_``, ``-``; no ``--`` or
    ``..``); IntegrityError otherwise."""
    if not _REPO_ID.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id:
        raise IntegrityError(f"{repo_id[:120]!r} is not a Hub repository id: write OWNER/NAME (letters, digits, "
                             "'.', '_', '-')")
    return repo_id


def parse(source: str) -> tuple[str, str]:
    """(repo_id, revision) of ``hf://OWNER/NAME@REVISION`` (revision default "main"); IntegrityError if malformed."""
    rest = source[len(SCHEME):] if is_hub(source) else source
    repo_id, _, revision = rest.partition("@")
    revision = revision or "main"
    if not _REVISION.fullmatch(revision) or ".." in revision or revision.startswith("/"):
        raise IntegrityError(f"{source[:160]!r}: {revision[:60]!r} is not a revision (a branch, tag or commit hash)")
    return check_repo_id(repo_id), revision


def repo_folder(repo_id: str) -> str:
    """The cache's folder name for a model repository: models--OWNER--NAME."""
    return "models--" + repo_id.replace("/", "--")


def fetch(source: str, names: Sequence[str]) -> Path:
    """The snapshot folder of ``hf://OWNER/NAME@REVISION`` in the Hugging Face cache, with those of ``names``
    that the repository holds (nothing else is fetched). IntegrityError, one line, if it cannot be had."""
    repo_id, revision = parse(source)
    from huggingface_hub import snapshot_download  # the Hub client, only when the Hub is used

    try:
        path = snapshot_download(repo_id, revision=revision, repo_type="model", allow_patterns=list(names),
                                 library_name="huskyai")
    except (OSError, ValueError) as err:  # the library's errors: not found, offline without a cached copy, HTTP
        first = (str(err).strip().splitlines() or [""])[0][:240]
        raise IntegrityError(f"{source}: cannot be fetched from the Hugging Face Hub ({type(err).__name__}: "
                             f"{first})") from None
    folder = Path(path)
    if snapshot_origin(folder) != f"{SCHEME}{repo_id}@{folder.name}":
        raise IntegrityError(f"{source}: the Hub cache gave {folder}, which is not a commit's snapshot of "
                             f"{repo_id} (is the cache's refs/{revision} a commit hash?)")
    return folder


def snapshot_origin(folder: Path) -> str | None:
    """``hf://OWNER/NAME@COMMIT`` if ``folder`` is a commit's snapshot in a Hugging Face cache
    (.../models--OWNER--NAME/snapshots/COMMIT, links resolved), else None."""
    real = Path(os.path.realpath(folder))
    repo = real.parent.parent.name
    if real.parent.name != "snapshots" or not _COMMIT.fullmatch(real.name) or not repo.startswith("models--"):
        return None
    owner, _, name = repo[len("models--"):].partition("--")
    return f"{SCHEME}{owner}/{name}@{real.name}" if name and "--" not in name else None


def open_linked(dir_fd: int, name: str, folder: Path) -> int:
    """A descriptor of the blob that the snapshot link ``name`` in the open folder ``dir_fd`` points to, opened
    without following any link; IntegrityError if ``folder`` is not a Hub cache snapshot or the link points
    anywhere but its repository's ``blobs/``."""
    if snapshot_origin(folder) is None:
        raise IntegrityError(f"{folder / name}: a symlink, and an export's files are never read through one "
                             "(symlinks are refused)")
    try:
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError as err:
        raise IntegrityError(f"{folder / name}: cannot be read safely ({err.strerror})") from None
    match = _BLOB_LINK.fullmatch(target)
    if not match:
        raise IntegrityError(f"{folder / name}: a link in the Hugging Face cache that points outside its "
                             f"repository's blobs/ (to {target[:120]!r}); refusing it")
    commit = Path(os.path.realpath(folder)).name
    try:
        repo_fd = os.open("../..", _DIR, dir_fd=dir_fd)  # the snapshot's real grandparent, whatever its path
        try:
            snapshots_fd = os.open("snapshots", _DIR | os.O_NOFOLLOW, dir_fd=repo_fd)
            try:  # the folder read is that repository's snapshots/COMMIT itself, not a look-alike
                here = os.stat(commit, dir_fd=snapshots_fd, follow_symlinks=False)
            finally:
                os.close(snapshots_fd)
            if (here.st_dev, here.st_ino) != (os.fstat(dir_fd).st_dev, os.fstat(dir_fd).st_ino):
                raise IntegrityError(f"{folder}: not a snapshot of its own cache folder; refusing its links")
            blobs_fd = os.open("blobs", _DIR | os.O_NOFOLLOW, dir_fd=repo_fd)
        finally:
            os.close(repo_fd)
    except OSError as err:
        raise IntegrityError(f"{folder / name}: its cache's blobs/ cannot be opened safely ({err.strerror})") \
            from None
    try:
        return os.open(match.group(1), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0),
                       dir_fd=blobs_fd)
    except FileNotFoundError:
        raise IntegrityError(f"{folder / name}: its blob is missing from the Hugging Face cache") from None
    except OSError as err:  # ELOOP: the blob itself is a link
        raise IntegrityError(f"{folder / name}: its blob cannot be opened safely ({err.strerror}; links in "
                             "blobs/ are refused)") from None
    finally:
        os.close(blobs_fd)

