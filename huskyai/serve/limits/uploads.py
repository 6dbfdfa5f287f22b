"""The app's uploads: recorded as gradio's upload route hands them out, deleted on a timer, and nothing else.

Only a path recorded here is ever deleted, so a request naming another component's cached file
(the model card's plot, an example photo) cannot make the app delete it. An upload is kept for a
while after each use, so the page's preview and a second click on the button still find it:

- never used by a prediction: deleted ``unread_ttl`` seconds after it arrived;
- used: deleted ``ttl`` seconds after its last use;
- over ``budget_bytes`` in all: the least recently used answered uploads go first.

Gradio streams each upload into a top-level ``tmp*`` file of its cache before moving it into place;
an aborted upload leaves that file behind. Such files are deleted once nothing has written to them
for ``orphan_age`` seconds (the app cuts off a body that stalls for less than that).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class _Upload:
    size: int
    arrived: float
    last_used: float | None = None


class UploadRegistry:
    def __init__(self, cache_dir: str | Path, ttl: float = 300.0, unread_ttl: float = 60.0,
                 orphan_age: float = 60.0, budget_bytes: int = 1024 * 1024 * 1024,
                 protected: Callable[[], Iterable[str]] = tuple):
        self.cache_dir = Path(cache_dir).resolve()
        self._protected = protected  # files the app itself put in the cache (examples, the card's plot)
        self.ttl = ttl
        self.unread_ttl = min(unread_ttl, ttl)
        self.orphan_age = orphan_age
        self.budget_bytes = budget_bytes
        self._uploads: dict[str, _Upload] = {}
        self._lock = threading.Lock()

    def _key(self, path: str | Path) -> str | None:
        """The canonical path of a file inside the cache, or None for anything outside it."""
        try:
            resolved = Path(path).resolve()
        except (OSError, ValueError):
            return None
        return str(resolved) if self.cache_dir in resolved.parents else None

    def record(self, paths: list[str], now: float | None = None) -> None:
        """Remember files just written by gradio's upload route."""
        now = time.monotonic() if now is None else now
        protected = self.protected()
        with self._lock:
            for p in paths:
                key = self._key(p)
                if key is None or key in protected:  # an upload of the same bytes and name lands on it
                    continue
                try:
                    size = Path(key).stat().st_size
                except OSError:
                    size = 0
                self._uploads[key] = _Upload(size, now)
        self._enforce_budget()

    def never_delete(self, protected: Callable[[], Iterable[str]]) -> None:
        """Name the files the app itself keeps in the cache (asked anew at each sweep): never deleted."""
        self._protected = protected

    def protected(self) -> set[str]:
        return {k for k in map(self._key, self._protected()) if k}

    def is_upload(self, path: str | Path) -> bool:
        key = self._key(path)
        with self._lock:
            return key is not None and key in self._uploads

    def touch(self, path: str | Path, now: float | None = None) -> bool:
        """Note that a prediction read this upload; False when it is not one of ours."""
        key = self._key(path)
        now = time.monotonic() if now is None else now
        with self._lock:
            upload = self._uploads.get(key) if key else None
            if upload is None:
                return False
            upload.last_used = now
            return True

    def discard(self, paths: list[str]) -> None:
        """Delete recorded uploads now (an upload the app refused after gradio had written it)."""
        with self._lock:
            keys = [k for k in map(self._key, paths) if k and self._uploads.pop(k, None) is not None]
        for k in keys:
            _delete_upload(Path(k))

    def __len__(self) -> int:
        return len(self._uploads)

    @property
    def pending_bytes(self) -> int:
        with self._lock:
            return sum(u.size for u in self._uploads.values())

    def sweep(self, now: float | None = None, everything: bool = False) -> int:
        """Delete expired uploads (all of them with ``everything``) and orphaned partial uploads."""
        now = time.monotonic() if now is None else now
        with self._lock:
            expired = [k for k, u in self._uploads.items() if everything or (
                now - u.arrived >= self.unread_ttl if u.last_used is None else now - u.last_used >= self.ttl)]
            for k in expired:
                del self._uploads[k]
        protected = self.protected() if expired else set()
        for k in expired:
            if k not in protected:
                _delete_upload(Path(k))
        return len(expired) + self.sweep_orphans(everything=everything)

    def sweep_orphans(self, everything: bool = False) -> int:
        """Delete the ``tmp*`` files aborted uploads leave at the top of the cache."""
        removed = 0
        cutoff = time.time() - self.orphan_age
        try:
            entries = list(self.cache_dir.iterdir())
        except OSError:
            return 0
        for entry in entries:
            try:
                if not entry.name.startswith("tmp") or entry.is_symlink() or not entry.is_file():
                    continue
                if everything or entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed += 1
            except OSError:
                continue
        return removed

    def _enforce_budget(self) -> None:
        protected = self.protected()
        with self._lock:
            total = sum(u.size for u in self._uploads.values())
            if total <= self.budget_bytes:
                return
            answered = sorted((u.last_used, k) for k, u in self._uploads.items() if u.last_used is not None)
            evicted = []
            for _, k in answered:
                if total <= self.budget_bytes:
                    break
                total -= self._uploads.pop(k).size
                evicted.append(k)
        for k in evicted:
            if k not in protected:
                _delete_upload(Path(k))


def _delete_upload(path: Path) -> None:
    """Delete an upload and the per-upload folder gradio made for it, when nothing else is in it."""
    try:
        path.unlink(missing_ok=True)
        folder = path.parent
        if not any(folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)
    except OSError:
        pass
