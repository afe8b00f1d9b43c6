"""Upstream names resolved with their record's TTL, against a real DNS server on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.proxy.conftest import request, route, service, snapshot
from tests.proxy.dns_server import DnsServer
from tollway.config import load_settings
from tollway.errors import ConfigError
from tollway.proxy.dns import NO_TTL, ResolveFailed, Resolver
from tollway.proxy.responses import MSG_NO_NAME


def resolve(resolver: Resolver, host: str) -> str:
    return asyncio.run(resolver.resolve(host))


def test_an_answer_is_kept_for_its_ttl_then_asked_again() -> None:
    with DnsServer({"api.test": [("A", "127.0.0.1", 1)]}) as dns:
        resolver = Resolver([dns.address])
        assert resolve(resolver, "api.test") == "127.0.0.1"
        dns.records["api.test"] = [("A", "127.0.0.2", 300)]
        assert resolve(resolver, "api.test") == "127.0.0.1"  # within the TTL: not asked
        assert dns.queries[("api.test", "A")] == 1
        time.sleep(1.2)
        assert resolve(resolver, "api.test") == "127.0.0.2"
        assert dns.queries[("api.test", "A")] == 2
        expiry, _ = resolver.cached("api.test")  # type: ignore[misc]
        assert 298 < expiry - resolver.clock() <= 300
        assert resolver.lookups == 2


def test_the_smallest_ttl_of_the_answer_wins() -> None:
    with DnsServer({"pair.test": [("A", "127.0.0.1", 120), ("A", "127.0.0.3", 7)]}) as dns:
        resolver = Resolver([dns.address])
        assert resolve(resolver, "pair.test") in ("127.0.0.1", "127.0.0.3")
        expiry, _ = resolver.cached("pair.test")  # type: ignore[misc]
        assert 5 < expiry - resolver.clock() <= 7


def test_ipv4_first_and_ipv6_only_when_there_is_no_ipv4() -> None:
    with DnsServer({"both.test": [("AAAA", "::1", 60), ("A", "127.0.0.1", 60)],
                    "six.test": [("AAAA", "::1", 60)]}) as dns:
        resolver = Resolver([dns.address])
        assert resolve(resolver, "both.test") == "127.0.0.1"
        assert dns.queries[("both.test", "AAAA")] == 0
        assert resolve(resolver, "six.test") == "::1"


def test_a_name_nobody_knows_fails_and_is_not_cached() -> None:
    with DnsServer({}) as dns:
        resolver = Resolver([dns.address])
        for _ in range(2):
            with pytest.raises(ResolveFailed, match="cannot resolve nowhere.invalid"):
                resolve(resolver, "nowhere.invalid")
        assert resolver.cached("nowhere.invalid") is None
        assert dns.queries[("nowhere.invalid", "A")] == 2


def test_a_ttl_of_zero_is_asked_again_every_time() -> None:
    with DnsServer({"zero.test": [("A", "127.0.0.1", 0)]}) as dns:
        resolver = Resolver([dns.address])
        for _ in range(3):
            assert resolve(resolver, "zero.test") == "127.0.0.1"
        assert resolver.cached("zero.test") is None
        assert resolver.lookups == 3


def test_hosts_file_names_and_ip_literals() -> None:
    with DnsServer({}) as dns:
        resolver = Resolver([dns.address])
        assert resolve(resolver, "localhost") in ("127.0.0.1", "::1")
        assert dns.queries[("localhost", "A")] == 0  # the hosts file answered
        assert resolve(resolver, "10.1.2.3") == "10.1.2.3" and resolver.cached("10.1.2.3") is None


def test_an_answer_only_getaddrinfo_knows_is_kept_no_ttl_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    async def nothing(self: Resolver, host: str) -> None:
        return None

    monkeypatch.setattr(Resolver, "_ares", nothing)  # as for a name only an NSS module knows
    resolver = Resolver()
    assert resolve(resolver, "localhost") in ("127.0.0.1", "::1")
    expiry, _ = resolver.cached("localhost")  # type: ignore[misc]
    assert NO_TTL - 1 < expiry - resolver.clock() <= NO_TTL


def test_the_proxy_resolves_upstream_names_with_dns_resolver(make_proxy, echo_upstream):
    with DnsServer({"echo.test": [("A", "127.0.0.1", 60)]}) as dns:
        proxy = make_proxy(dns_resolver=dns.address)
        svc = service(echo_upstream, host="echo.test")
        missing = service(echo_upstream, host="missing.test")
        proxy.apply(snapshot([svc, missing], [route(svc, ["/echo"]), route(missing, ["/missing"])]))
        for _ in range(3):
            assert request(proxy.port, "GET", "/echo/x").status == 200
        assert dns.queries[("echo.test", "A")] == 1
        resp = request(proxy.port, "GET", "/missing/x")
        assert resp.status == 503
        assert resp.json() == {"message": MSG_NO_NAME}


def test_dns_resolver_setting_is_checked() -> None:
    assert load_settings(environ={}, dns_resolver=" 10.0.0.2 , 10.0.0.3:5353,[::1]:53").dns_resolver == \
        "10.0.0.2,10.0.0.3:5353,[::1]:53"
    with pytest.raises(ConfigError, match="dns_resolver"):
        load_settings(environ={}, dns_resolver="dns.example.com")
