"""This machine's signing key for model cards, and the HMAC signature made with it.

The key is $HUSKYAI_SIGNING_KEY, or a file in the user's config folder (mode 0600) that training
or signing creates on first use. A card signed with it is trusted on this machine, and only here.
Whoever can write the key can sign anything this machine trusts, so the key file is only ever created
(exclusively, no link followed) and read (no link followed, a regular file no one else can read); nothing
opens it for writing once it exists.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from huskyai import settings
from huskyai.errors import IntegrityError
from huskyai.settings import SIGNING_KEY_ENV

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_MAX_KEY_BYTES = 4096  # the key is 64 hex characters; a larger file is not a key of ours


def key_path() -> Path:
    """The key file: huskyai/signing.key in the user's config folder (huskyai.settings.config_home)."""
    return settings.config_home() / "huskyai" / "signing.key"


def key_source() -> str:
    """Where this machine's key comes from, for a person: "$HUSKYAI_SIGNING_KEY", or the key file's path."""
    return f"${SIGNING_KEY_ENV}" if settings.env_signing_key() else str(key_path())


def signing_key(create: bool = False) -> bytes | None:
    """$HUSKYAI_SIGNING_KEY, else the key file (made on first use when ``create``), else None."""
    key = settings.env_signing_key()
    if key:
        return key
    path = key_path()
    key = _read_key(path)
    return _create_key(path) if key is None and create else key


def _read_key(path: Path) -> bytes | None:
    """The key file's bytes, or None if there is none. Never through a link: a link there could point the
    key at a file someone else knows or can write."""
    try:  # O_NONBLOCK: a FIFO at the key path fails the regular-file check instead of hanging the open
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:  # ELOOP: a symlink (dangling or not); EACCES: another user's file
        raise IntegrityError(f"{path}: the signing key cannot be opened safely ({err.strerror}; it must be a "
                             "regular file of yours, never a symlink): remove it, and a new key is made") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise IntegrityError(f"{path}: the signing key is not a regular file; remove it, and a new key is made")
        if info.st_mode & 0o077:
            raise IntegrityError(f"{path}: the signing key is readable by other users; chmod 600 it")
        if info.st_size > _MAX_KEY_BYTES:
            raise IntegrityError(f"{path}: {info.st_size} bytes is not a signing key of ours; remove it, and a new "
                                 "key is made")
        key = f.read(_MAX_KEY_BYTES).strip()
    if not key:  # an empty key would sign nothing: the card would be written unsigned
        raise IntegrityError(f"{path}: the signing key is empty; remove it, and a new key is made")
    return key


def _create_key(path: Path) -> bytes:
    """A new random key, written to a file that did not exist (``O_EXCL``: nothing that is there, a link
    least of all, is ever opened for writing), mode 0600 in a folder of mode 0700."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.stat(path.parent).st_mode & 0o022:
        raise IntegrityError(f"{path.parent}: writable by other users, so a key kept there could be swapped; "
                             "chmod 700 it")
    key = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC, 0o600)
    except FileExistsError:  # made at this moment by another process (or planted): read it like any key file
        existing = _read_key(path)
        if existing is None:
            raise IntegrityError(f"{path}: the signing key appeared and vanished while being made; "
                                 "try again") from None
        return existing
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    return key


def card_signature(card: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 over the card's canonical JSON, the signature itself left out."""
    body = {k: v for k, v in card.items() if k != "signature"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def signature_ok(card: dict[str, Any], key: bytes) -> bool:
    sig = card.get("signature")
    return (isinstance(sig, dict) and sig.get("alg") == "HMAC-SHA256" and isinstance(sig.get("value"), str)
            and hmac.compare_digest(sig["value"], card_signature(card, key)))
