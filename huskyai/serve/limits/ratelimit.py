"""Per-client budgets, kept in the app's limits store (huskyai.serve.limits.store: this process's memory, or Redis
shared by every replica): requests a minute, and requests at once.

:class:`RateLimiter` is a moving window (the ``limits`` library's): at most ``per_minute`` requests in any
``window`` seconds, whichever second they fall in, so a client cannot double its rate at a window's edge.
:class:`InFlight` counts the requests a client has being received or answered right now.
"""

from __future__ import annotations

from dataclasses import dataclass

from limits import RateLimitItemPerSecond

from huskyai.serve.limits.store import NAMESPACE, LimitsStore

IN_FLIGHT_EXPIRY = 300  # seconds: longer than any request may last (the proxy's read timeout is 120 s)


class RateLimiter:
    """At most ``per_minute`` requests from one client in any ``window`` seconds (0: no limit). ``name`` keeps
    this budget apart from the others in the same store (predictions, uploads, explanations)."""

    def __init__(self, per_minute: int, store: LimitsStore | None = None, name: str = "requests",
                 window: int = 60):
        self.per_minute = per_minute
        self.window = window
        self.name = name
        self.store = store if store is not None else LimitsStore()
        self.item = RateLimitItemPerSecond(per_minute, window, namespace=NAMESPACE) if per_minute > 0 else None

    def check(self, client: str) -> float | None:
        """None when ``client`` may go ahead (and counts the request); else seconds until it may."""
        if self.item is None or self.store.hit(self.item, self.name, client):
            return None
        return max(self.store.reset_in(self.item, self.name, client), 0.001)

    async def acheck(self, client: str) -> float | None:
        """:meth:`check` for code on the event loop."""
        if self.item is None or await self.store.ahit(self.item, self.name, client):
            return None
        return max(await self.store.areset_in(self.item, self.name, client), 0.001)


@dataclass(frozen=True)
class Ticket:
    """One request counted by :class:`InFlight`: its client, the client's count with it, and where it was counted."""

    client: str
    count: int
    shared: bool


class InFlight:
    """The requests each client has being received or answered at once: counted in the store (with Redis, one
    count across every replica), and in this process (``local``: the metrics' gauge)."""

    def __init__(self, store: LimitsStore | None = None, expiry: int = IN_FLIGHT_EXPIRY):
        self.store = store if store is not None else LimitsStore()
        self.expiry = expiry
        self.local: dict[str, int] = {}

    async def enter(self, client: str) -> Ticket:
        """Count one more request of ``client``; the ticket's ``count`` includes it."""
        self.local[client] = self.local.get(client, 0) + 1
        count, shared = await self.store.acount(self._key(client), 1, self.expiry)
        return Ticket(client, max(count, 1), shared)

    async def leave(self, ticket: Ticket) -> None:
        left = self.local.get(ticket.client, 0) - 1
        if left > 0:
            self.local[ticket.client] = left
        else:
            self.local.pop(ticket.client, None)
        await self.store.adone(self._key(ticket.client), ticket.shared, self.expiry)

    def here(self, client: str) -> int:
        """``client``'s requests in this process."""
        return self.local.get(client, 0)

    @property
    def total(self) -> int:
        """Every client's requests in this process."""
        return sum(self.local.values())

    @staticmethod
    def _key(client: str) -> str:
        return f"in-flight/{client}"
