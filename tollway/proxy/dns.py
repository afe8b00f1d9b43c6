"""Upstream host names resolved with c-ares (aiodns), each answer kept for its record's TTL.

    resolver = Resolver()                          # the system's resolv.conf and hosts file
    resolver = Resolver(["10.0.0.2", "10.0.0.3:5353"])   # settings.dns_resolver
    address = await resolver.resolve("mockbin")    # raises ResolveFailed

As Kong's default order, IPv4 (A) comes first and IPv6 (AAAA) is asked only when a name has no
IPv4 address. An answer is kept for the smallest TTL of its records, so a TTL of 0 (and a
hosts-file entry, for which c-ares reports 0) is looked up again at the next connection. When
c-ares finds nothing, getaddrinfo(3) is asked too, for names only the system's other NSS sources
know; its answer carries no TTL and is kept NO_TTL seconds. A failed lookup is not kept. Lookups
run only when an upstream connection is opened, never per request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable, Sequence

import aiodns
import aiodns.error

__all__ = ["NO_TTL", "ResolveFailed", "Resolver"]

NO_TTL = 30.0  # seconds a getaddrinfo answer (which has no TTL) is kept


class ResolveFailed(Exception):
    """No address for a host name."""


class Resolver:
    """Host name -> address, cached per record TTL. IP literals are returned as they are."""

    def __init__(self, nameservers: Sequence[str] = (), clock: Callable[[], float] = time.monotonic) -> None:
        self.nameservers = list(nameservers)
        self.clock = clock
        self._cache: dict[str, tuple[float, str]] = {}
        self._resolver: aiodns.DNSResolver | None = None  # made on first use, on the running loop
        self.lookups = 0  # names looked up (not answered from the cache), for tests and stats

    def cached(self, host: str) -> tuple[float, str] | None:
        """(expiry on the clock, address) while `host` is cached."""
        entry = self._cache.get(host)
        return entry if entry is not None and entry[0] > self.clock() else None

    async def resolve(self, host: str) -> str:
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            pass
        entry = self.cached(host)
        if entry is not None:
            return entry[1]
        self.lookups += 1
        started = self.clock()
        found = await self._ares(host)
        if found is None:
            found = await self._system(host)
        address, ttl = found
        if ttl > 0:
            self._cache[host] = (started + ttl, address)
        return address

    async def _ares(self, host: str) -> tuple[str, float] | None:
        loop = asyncio.get_running_loop()
        if self._resolver is None or self._resolver.loop is not loop:
            self._resolver = aiodns.DNSResolver(nameservers=self.nameservers or None, loop=loop)
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                result = await self._resolver.getaddrinfo(host, family=family, type=socket.SOCK_STREAM)
            except aiodns.error.DNSError:
                continue
            if result.nodes:
                ttl = min(node.ttl for node in result.nodes)
                address = result.nodes[0].addr[0]
                return (address.decode() if isinstance(address, bytes) else str(address)), float(ttl)
        return None

    async def _system(self, host: str) -> tuple[str, float]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ResolveFailed(f"cannot resolve {host}: {exc}") from exc
        if not infos:
            raise ResolveFailed(f"cannot resolve {host}: no address")
        return str(infos[0][4][0]), NO_TTL
