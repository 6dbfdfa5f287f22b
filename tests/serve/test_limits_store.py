"""The limits store (huskyai.serve.limits.store) with Debian's redis-server: budgets shared by every store on one
Redis (as replicas share them), and what happens when Redis goes away (fail open, to each process's memory)."""

from __future__ import annotations

import asyncio
import time

import pytest
from serve.services import HAVE_REDIS, running_redis

from huskyai.serve.limits.ratelimit import InFlight, RateLimiter
from huskyai.serve.limits.store import LimitsStore


def test_memory_is_the_default_and_needs_nothing():
    store = LimitsStore()
    assert not store.shared and store.check() and store.up
    limiter = RateLimiter(2, store, name="predictions")
    assert [limiter.check("a"), limiter.check("a")] == [None, None]
    assert limiter.check("a") is not None
    assert asyncio.run(limiter.acheck("a")) is not None  # the async call reads the same budget


def test_in_flight_counts_each_client_and_gives_its_places_back():
    async def run() -> list:
        in_flight = InFlight(LimitsStore())
        first, second = await in_flight.enter("a"), await in_flight.enter("a")
        other = await in_flight.enter("b")
        counts = [first.count, second.count, other.count, in_flight.total]
        for ticket in (first, second, other):
            await in_flight.leave(ticket)
        again = await in_flight.enter("a")
        return counts + [again.count, in_flight.here("b")]

    assert asyncio.run(run()) == [1, 2, 1, 3, 1, 0]


redis_only = pytest.mark.skipif(not HAVE_REDIS, reason="redis-server is not installed (apt-get install redis-server)")


@redis_only
def test_two_stores_on_one_redis_share_one_budget_and_one_in_flight_count():
    """Two stores, as two replicas hold them: a client's third request is refused whichever one it reaches, its
    requests at once are counted once across both, and another client has its own budget."""
    with running_redis() as redis:
        a, b = LimitsStore(redis.url), LimitsStore(redis.url)
        first, second = RateLimiter(2, a, name="predictions"), RateLimiter(2, b, name="predictions")
        assert first.check("198.51.100.7") is None
        assert asyncio.run(second.acheck("198.51.100.7")) is None
        wait = first.check("198.51.100.7")
        assert wait is not None and 55 < wait <= 60
        assert second.check("198.51.100.7") is not None
        assert second.check("198.51.100.8") is None

        async def counts() -> list[int]:
            here, there = InFlight(a), InFlight(b)
            t1, t2 = await here.enter("c"), await there.enter("c")
            await here.leave(t1)
            t3 = await there.enter("c")
            await there.leave(t2)
            await there.leave(t3)
            t4 = await here.enter("c")
            await here.leave(t4)
            return [t1.count, t2.count, t3.count, t4.count]

        assert asyncio.run(counts()) == [1, 2, 2, 1]
        assert a.up and b.up and a.check()


@redis_only
def test_when_redis_goes_away_each_store_falls_back_to_its_own_memory_and_comes_back():
    """Fail open, to memory: with Redis stopped, nothing is refused because Redis is away and no call waits on it;
    each store keeps the budget alone (so a client gets at most one budget per replica), is marked down, and
    says so once. With Redis back, the shared budget holds again after the retry interval."""
    with running_redis() as redis:
        changes: list[bool] = []
        store = LimitsStore(redis.url, retry_seconds=0.5, on_change=changes.append)
        other = LimitsStore(redis.url, retry_seconds=0.5)
        limiter, elsewhere = RateLimiter(2, store, name="predictions"), RateLimiter(2, other, name="predictions")
        assert limiter.check("a") is None and elsewhere.check("a") is None  # the shared budget is spent
        assert limiter.check("a") is not None

        redis.stop()
        started = time.monotonic()
        local = [limiter.check("a"), limiter.check("a"), limiter.check("a")]
        assert time.monotonic() - started < 1.0  # one failed call, then memory: no request waits on Redis
        assert local[:2] == [None, None] and local[2] is not None  # this store's own budget of 2
        assert asyncio.run(limiter.acheck("a")) is not None
        assert not store.up and changes == [False] and not store.check()

        redis.start()
        time.sleep(0.6)  # the retry interval
        assert [limiter.check("b"), elsewhere.check("b")] == [None, None]  # Redis is empty: counted afresh
        assert limiter.check("b") is not None and store.up and changes == [False, True]
