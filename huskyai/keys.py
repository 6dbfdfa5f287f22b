"""This machine's signing key for model cards, and the HMAC signature made with it.

The key is $HUSKYAI_SIGNING_KEY, or a file in the user's config folder (mode 0600) that training
creates on first use. A card signed with it is trusted on this machine, and only here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from .errors import IntegrityError

SIGNING_KEY_ENV = "HUSKYAI_SIGNING_KEY"


def key_path() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "huskyai" / "signing.key"


def signing_key(create: bool = False) -> bytes | None:
    """$HUSKYAI_SIGNING_KEY, else the key file (made on first use when ``create``), else None."""
    if os.environ.get(SIGNING_KEY_ENV):
        return os.environ[SIGNING_KEY_ENV].encode()
    path = key_path()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = secrets.token_hex(32).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key
    with os.fdopen(fd, "rb") as f:
        if os.fstat(f.fileno()).st_mode & 0o077:
            raise IntegrityError(f"{path}: the signing key is readable by other users; chmod 600 it")
        return f.read().strip()


def card_signature(card: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 over the card's canonical JSON, the signature itself left out."""
    body = {k: v for k, v in card.items() if k != "signature"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def signature_ok(card: dict[str, Any], key: bytes) -> bool:
    sig = card.get("signature")
    return (isinstance(sig, dict) and sig.get("alg") == "HMAC-SHA256" and isinstance(sig.get("value"), str)
            and hmac.compare_digest(sig["value"], card_signature(card, key)))
