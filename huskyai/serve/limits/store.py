"""Where every per-client budget lives: this process's memory, or one Redis server that every replica shares,
through the ``limits`` library.

``memory://`` (HUSKYAI_LIMITS_STORAGE's default) keeps the budgets in this process: one process needs nothing
else. ``redis://HOST:PORT`` keeps them in Redis, so that N replicas behind one proxy give a client one budget,
not N. The moving windows live in Redis as the ``limits`` library lays them out (keys under "LIMITS:huskyai/...",
each expiring with its window); the key names a client by its address as huskyai.serve.limits.clients buckets it,
kept at most a window (a minute) after its last request, as nginx's own limit zones keep it.

**When Redis goes away the store fails open, to this process's memory.** Every budget is then kept by each
replica on its own: a client gets at most N budgets across N replicas (never an unlimited one), the proxy's own
per-client limits still hold in front, and nobody is refused because a cache went down. Redis is tried again
every ``retry_seconds``; the shared budgets resume once it answers (counting afresh: what the replicas counted
alone is not carried over). Failing closed would turn a Redis outage into a whole-service outage for every
client, to stop at most N-fold the rate of one. A request never waits long on a Redis that hangs: each call
gives up after ``timeout`` seconds, without retries, and that counts as Redis being away.

The middleware runs on the server's event loop and uses the async calls (``ahit``, ``acount``), which never
block it; handlers run in worker threads and use the plain ones. The async client is made on the loop that
first uses it (a Redis connection belongs to one loop).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from limits import RateLimitItem
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindow
from limits.errors import StorageError
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

MEMORY = "memory://"
RETRY_SECONDS = 5.0  # how long the store keeps to memory after Redis failed, before it asks Redis again
TIMEOUT_SECONDS = 0.5  # one Redis call (connecting included); Redis answers on a LAN in well under a millisecond
NAMESPACE = "huskyai"  # the first part of every key this app puts in the store

_logger = logging.getLogger(__name__)


class LimitsStore:
    """The budgets of one app: in memory, or in Redis (``uri``) with this process's memory as the fallback.

    ``on_change(up)`` is told when the shared store stops answering (False) and answers again (True)."""

    def __init__(self, uri: str = MEMORY, *, retry_seconds: float = RETRY_SECONDS,
                 timeout: float = TIMEOUT_SECONDS, on_change: Callable[[bool], None] | None = None):
        self.uri = uri
        self.shared = not uri.startswith(MEMORY)
        self.retry_seconds = retry_seconds
        self.timeout = timeout
        self.on_change = on_change or (lambda up: None)
        self.local = MemoryStorage()  # the budgets of memory://, and everybody's while Redis is away
        self._local_window = MovingWindowRateLimiter(self.local)
        self._shared = storage_from_string(uri, **self._redis_options(sync=True)) if self.shared else None
        self._shared_window = MovingWindowRateLimiter(self._shared) if self._shared is not None else None
        self._async: dict[asyncio.AbstractEventLoop, tuple] = {}  # per event loop: (storage, moving window)
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self.up = True  # whether the shared store answered last time it was asked (always True for memory://)

    def __repr__(self) -> str:
        where = self.uri.split("@")[-1] if self.shared else MEMORY  # never a password
        return f"LimitsStore({where}, {'up' if self.up else 'away: budgets kept in memory'})"

    # --- moving windows ---------------------------------------------------------------------------------------

    def hit(self, item: RateLimitItem, *ids: str) -> bool:
        """Count one request against ``item`` for ``ids``; False when the window is full (nothing counted)."""
        if self._use_shared():
            try:
                return self._noted_up(self._shared_window.hit(item, *ids))
            except StorageError as err:
                self._went_away(err)
        return self._local_window.hit(item, *ids)

    def reset_in(self, item: RateLimitItem, *ids: str) -> float:
        """Seconds until ``ids`` may make one more request against ``item`` (0 when it may now)."""
        if self._use_shared():
            try:
                stats = self._shared_window.get_window_stats(item, *ids)
                return self._noted_up(_seconds_until(stats.reset_time, stats.remaining))
            except StorageError as err:
                self._went_away(err)
        stats = self._local_window.get_window_stats(item, *ids)
        return _seconds_until(stats.reset_time, stats.remaining)

    async def ahit(self, item: RateLimitItem, *ids: str) -> bool:
        """:meth:`hit` for code on the event loop: a shared store's call never blocks the loop."""
        if self._use_shared():
            try:
                return self._noted_up(await self._async_window().hit(item, *ids))
            except StorageError as err:
                self._went_away(err)
        return self._local_window.hit(item, *ids)

    async def areset_in(self, item: RateLimitItem, *ids: str) -> float:
        if self._use_shared():
            try:
                stats = await self._async_window().get_window_stats(item, *ids)
                return self._noted_up(_seconds_until(stats.reset_time, stats.remaining))
            except StorageError as err:
                self._went_away(err)
        stats = self._local_window.get_window_stats(item, *ids)
        return _seconds_until(stats.reset_time, stats.remaining)

    # --- counters (requests at once) ----------------------------------------------------------------------------

    async def acount(self, key: str, amount: int, expiry: int) -> tuple[int, bool]:
        """Add ``amount`` (1 or -1) to the counter ``key`` and return (its new value, whether it is the shared one).

        A counter lives ``expiry`` seconds from its first count; one that is not back to 0 by then (a replica
        killed with requests in flight) is forgotten, so a crash cannot hold a client's places for ever."""
        if self._use_shared():
            try:
                storage, _ = self._async_pair()
                return self._noted_up(await storage.incr(f"{NAMESPACE}/{key}", expiry, amount)), True
            except StorageError as err:
                self._went_away(err)
        return self.local.incr(f"{NAMESPACE}/{key}", expiry, amount), False

    async def aforget(self, key: str, shared: bool) -> None:
        """Drop the counter ``key`` where it was counted (a counter that went below 0 after an expiry)."""
        try:
            if shared and self.shared:
                storage, _ = self._async_pair()
                await storage.clear(f"{NAMESPACE}/{key}")
            else:
                self.local.clear(f"{NAMESPACE}/{key}")
        except StorageError as err:
            self._went_away(err)

    async def adone(self, key: str, shared: bool, expiry: int) -> None:
        """Take back one count of ``key`` from where :meth:`acount` put it."""
        try:
            if shared and self.shared:
                storage, _ = self._async_pair()
                left = await storage.incr(f"{NAMESPACE}/{key}", expiry, -1)
            else:
                left = self.local.incr(f"{NAMESPACE}/{key}", expiry, -1)
        except StorageError as err:
            self._went_away(err)
            return
        if left < 0:
            await self.aforget(key, shared)

    # --- health -------------------------------------------------------------------------------------------------

    def check(self) -> bool:
        """Ask the shared store whether it answers now (True for memory://); updates :attr:`up`."""
        if not self.shared:
            return True
        try:
            ok = bool(self._shared.check())
        except Exception:  # noqa: BLE001 - check() itself may raise what it did not wrap
            ok = False
        if ok:
            self._noted_up(True)
        else:
            self._went_away(None)
        return ok

    def _use_shared(self) -> bool:
        return self.shared and (self.up or time.monotonic() >= self._retry_at)

    def _noted_up(self, value):
        if not self.up:
            with self._lock:
                was, self.up = self.up, True
            if not was:
                _logger.warning("the limits store %s answers again: budgets are shared again", self)
                self.on_change(True)
        return value

    def _went_away(self, err: Exception | None) -> None:
        with self._lock:
            self._retry_at = time.monotonic() + self.retry_seconds
            was, self.up = self.up, False
        if was:
            cause = type(getattr(err, "storage_error", err)).__name__ if err is not None else "no answer"
            _logger.warning("the limits store %s does not answer (%s): each budget is kept in this process's "
                            "memory until it does", self, cause)
            self.on_change(False)

    def _async_pair(self) -> tuple:
        loop = asyncio.get_running_loop()
        pair = self._async.get(loop)
        if pair is None:
            storage = storage_from_string(f"async+{self.uri}", implementation="redispy",
                                                **self._redis_options(sync=False))
            pair = self._async[loop] = (storage, AsyncMovingWindow(storage))
            for old in [k for k in self._async if k.is_closed()]:  # loops of servers that stopped
                del self._async[old]
        return pair

    def _async_window(self) -> AsyncMovingWindow:
        return self._async_pair()[1]

    def _redis_options(self, sync: bool) -> dict:
        """No retries and short timeouts: a request asks Redis once, and a Redis that does not answer at once
        counts as away (the fallback takes over) instead of holding the request."""
        from redis.backoff import NoBackoff

        if sync:
            from redis.retry import Retry
        else:
            from redis.asyncio.retry import Retry
        return {"wrap_exceptions": True, "socket_timeout": self.timeout, "socket_connect_timeout": self.timeout,
                "retry": Retry(NoBackoff(), 0)}


def _seconds_until(reset_time: float, remaining: int) -> float:
    return 0.0 if remaining > 0 else max(0.0, reset_time - time.time())
