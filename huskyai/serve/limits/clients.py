"""Which client a request is charged to: the one key of every per-client budget (rate limits, requests in
flight, connections), behind any number of trusted proxies, with an IPv6 client counted as its /64."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPV6_BUCKET_PREFIX = 64  # one subscriber is handed at least a /64: its addresses are one client


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted_hops: int) -> str:
    """The address a request is charged to: the one key of every per-client budget (rate limits, requests
    in flight, connections).

    ``peer`` is the TCP peer; ``forwarded_for`` the X-Forwarded-For header values in order. With
    ``trusted_hops`` = N proxies in front, each appends the address it received from, so the
    client is the N-th entry from the right: anything left of it was written by the client itself
    and is ignored (a forged first hop cannot pick the rate-limit bucket).

    An IPv6 client is charged as its /64 (one subscriber holds all 2**64 addresses of it, so a budget per
    address would be no budget); an IPv4-mapped IPv6 address counts as the IPv4 address it carries.
    """
    peer = peer or "unknown"
    if trusted_hops <= 0:
        return _bucket(peer) or peer
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    if not hops:
        return _bucket(peer) or peer  # a request that bypassed the proxy: charged to whoever connected
    candidate = hops[-trusted_hops] if len(hops) >= trusted_hops else hops[0]
    return _bucket(candidate) or _bucket(peer) or peer  # not an address: a trusted proxy would not write that


def _bucket(address: str) -> str | None:
    """The budget ``address`` draws on (itself for IPv4, its /64 for IPv6); None when it is not an IP address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip), IPV6_BUCKET_PREFIX), strict=False))
    return str(ip)
