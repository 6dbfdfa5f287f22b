"""Per-client request limits: a sliding one-minute window, bounded in memory."""

from __future__ import annotations

import threading
import time
from collections import deque


class RateLimiter:
    def __init__(self, per_minute: int, window: float = 60.0, max_clients: int = 100_000):
        self.per_minute = per_minute
        self.window = window
        self.max_clients = max_clients
        self._hits: dict[str, deque] = {}
        self._lock = threading.Lock()
        self._calls = 0

    def check(self, client: str, now: float | None = None) -> float | None:
        """None when ``client`` may go ahead (and counts the request); else seconds until it may."""
        if self.per_minute <= 0:
            return None
        now = time.monotonic() if now is None else now
        with self._lock:
            self._calls += 1
            if self._calls % 1024 == 0 or len(self._hits) > self.max_clients:
                self._forget_idle(now)
            hits = self._hits.setdefault(client, deque())
            while hits and now - hits[0] >= self.window:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return self.window - (now - hits[0])
            hits.append(now)
            return None

    def _forget_idle(self, now: float) -> None:
        idle = [c for c, hits in self._hits.items() if not hits or now - hits[-1] >= self.window]
        for c in idle:
            del self._hits[c]
        if len(self._hits) > self.max_clients:  # a flood of distinct clients: drop the oldest
            for c in sorted(self._hits, key=lambda c: self._hits[c][-1])[: len(self._hits) - self.max_clients]:
                del self._hits[c]

    def __len__(self) -> int:
        return len(self._hits)
