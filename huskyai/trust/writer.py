"""The one way to put a file into an export folder: never through a link, never half-written.

A writer that opens ``DIR/name`` for writing follows a symlink planted there, so a third party's export
whose redteam.json links to the signing key gets the key overwritten. Here nothing that already exists is
ever opened for writing: each file is written as a new file beside its destination (``O_CREAT|O_EXCL|
O_NOFOLLOW``), flushed to disk, then renamed over the destination. rename(2) replaces the directory entry
and never follows a link, so a link or hard link at the destination is replaced, not written through.
A destination that is a symlink, a folder, a FIFO or anything but a regular file is refused all the same:
no writer of ours puts one there, so it is a sign of tampering. Only the export's own plain file names
(``exports.KNOWN_NAMES``: the card, its files, and the OMS signature model.sig) are written, so no name can
reach outside the folder.

The model card is written here too, after the files it hashes (``write_card``, ``save_card``), and the
training writer's staged export is moved into place here (``move_into_place``), the new card last.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from huskyai.errors import IntegrityError
from huskyai.trust import exports
from huskyai.trust.keys import card_signature

NAMES = exports.KNOWN_NAMES  # every name a writer may put into an export
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_KINDS = ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


@contextlib.contextmanager
def open_folder(folder: Path) -> Iterator[int]:
    """The export folder as an open directory: every name below is resolved in it, not through its path."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
    except OSError as err:
        raise IntegrityError(f"{folder}: cannot open the export folder ({err.strerror})") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _check_name(folder: Path, name: str) -> None:
    if name not in NAMES:  # a plain known name: no "/", no "..", nothing the card could not list
        raise IntegrityError(f"{folder}: refusing to write {name!r}: only an export's own file names are written "
                             f"({', '.join(NAMES)})")


def _exists(dir_fd: int, folder: Path, name: str) -> bool:
    """Whether ``name`` is there; IntegrityError if it is there as anything but a regular file."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(mode):
        kind = next((k for test, k in _KINDS if test(mode)), "not a regular file")
        raise IntegrityError(f"{folder / name}: is {kind}, and an export's files are only ever regular files; "
                             "refusing to write over it (something planted it there: remove it and look at "
                             "where the export came from)")
    return True


def check_destinations(folder: Path, names: Iterable[str]) -> None:
    """Refuse, before any work is done, if a file about to be written into ``folder`` could not be."""
    folder = Path(folder)
    with open_folder(folder) as dir_fd:
        for name in names:
            _check_name(folder, name)
            _exists(dir_fd, folder, name)


def _write_at(dir_fd: int, folder: Path, name: str, data: bytes) -> None:
    """``data`` as ``name`` in the open folder: a new temporary file beside it, fsync, rename, fsync the folder."""
    _check_name(folder, name)
    _exists(dir_fd, folder, name)
    temp = f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC, 0o644, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as err:  # e.g. a folder planted at the destination since it was checked
            raise IntegrityError(f"{folder / name}: cannot be put in place ({err.strerror})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


def write_file(folder: Path, name: str, data: bytes) -> None:
    """Write ``data`` as ``folder/name``, an export's own file name, replacing a regular file atomically;
    IntegrityError if the name is not an export's or the destination is a symlink or not a regular file."""
    folder = Path(folder)
    _check_name(folder, name)
    with open_folder(folder) as dir_fd:
        _write_at(dir_fd, folder, name, data)


def write_files(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write several files into ``folder``, each as ``write_file`` does; every destination is checked first,
    so a refusal leaves the folder as it was."""
    folder = Path(folder)
    check_destinations(folder, files)
    with open_folder(folder) as dir_fd:
        for name, data in files.items():
            _write_at(dir_fd, folder, name, data)


def _read_at(dir_fd: int, folder: Path, name: str) -> bytes | None:
    """The bytes of ``name`` in the open folder, or None if it is not there; never through a link, never a FIFO."""
    if not _exists(dir_fd, folder, name):
        return None
    try:  # O_NONBLOCK: a FIFO swapped in since the check fails fstat below instead of hanging the open
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, dir_fd=dir_fd)
    except OSError as err:  # ELOOP: swapped for a symlink since the check
        raise IntegrityError(f"{folder / name}: cannot be opened safely ({err.strerror}; symlinks are refused)") \
            from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise IntegrityError(f"{folder / name}: not a regular file")
        if info.st_size > exports.MAX_FILE_BYTES:
            raise IntegrityError(f"{folder / name}: {info.st_size} bytes, more than any model file should be")
        return f.read(exports.MAX_FILE_BYTES + 1)


def card_json(card: dict[str, Any]) -> bytes:
    """The bytes of model.json for ``card``, as written."""
    return (json.dumps(card, indent=2) + "\n").encode()


def _save_at(dir_fd: int, folder: Path, card: dict[str, Any], key: bytes | None) -> dict[str, Any]:
    card = {k: v for k, v in card.items() if k != "signature"} | {"format_version": exports.FORMAT_VERSION}
    unknown = sorted(set(card.get("files", {})) - set(exports.EXPORT_NAMES))
    if unknown:
        raise IntegrityError(f"{folder}: refusing to write a card that lists {', '.join(map(repr, unknown))}, "
                             "not an export's own files")
    if key:
        card["signature"] = {"alg": "HMAC-SHA256", "value": card_signature(card, key)}
    _write_at(dir_fd, folder, exports.CARD_NAME, card_json(card))
    return card


def save_card(folder: Path, card: dict[str, Any], key: bytes | None = None) -> dict[str, Any]:
    """Write ``card`` (its file hashes as they are) as model.json, signed with ``key`` when given; returns
    the card as written."""
    folder = Path(folder)
    with open_folder(folder) as dir_fd:
        return _save_at(dir_fd, folder, card, key)


def write_card(folder: Path, card: dict[str, Any], key: bytes | None = None) -> dict[str, Any]:
    """Hash the export's files in ``folder`` into ``card``, sign it with ``key`` when given, write model.json;
    returns the card as written. A symlink or other non-regular file among the export's names is refused."""
    folder = Path(folder)
    with open_folder(folder) as dir_fd:
        files = {}
        for name in sorted(exports.EXPORT_NAMES):
            data = _read_at(dir_fd, folder, name)
            if data is not None:
                files[name] = exports.sha256(data)
        return _save_at(dir_fd, folder, dict(card, files=files), key)


def move_into_place(stage: Path, out: Path) -> None:
    """Replace the export in ``out`` by the one staged in ``stage`` (same file system); only the export's
    own files are touched. Every destination is checked first: a symlink or other non-regular file planted
    in ``out`` is refused before anything moves. The old card goes first and the new one last, so a crash
    half-way leaves no loadable mix; an old model.sig (it signs the old card) goes too, unless one is staged."""
    stage, out = Path(stage), Path(out)
    with open_folder(stage) as src, open_folder(out) as dst:
        for name in NAMES:
            _exists(dst, out, name)
        if not _exists(src, stage, exports.CARD_NAME):
            raise IntegrityError(f"{stage}: no model card staged; nothing moved")
        if _exists(dst, out, exports.CARD_NAME):
            os.unlink(exports.CARD_NAME, dir_fd=dst)
        for name in (*exports.EXPORT_NAMES, exports.SIGNATURE_NAME):
            if _exists(src, stage, name):
                os.replace(name, name, src_dir_fd=src, dst_dir_fd=dst)
            elif _exists(dst, out, name):
                os.unlink(name, dir_fd=dst)  # no file of an older model may linger
        os.replace(exports.CARD_NAME, exports.CARD_NAME, src_dir_fd=src, dst_dir_fd=dst)
        os.fsync(dst)
