"""trusted_ips: the X-Forwarded-* headers of a trusted client (a load balancer) are passed on, and
its X-Forwarded-Proto says whether the request came over https; anyone else's are replaced."""

from __future__ import annotations

import pytest

from tests.proxy.conftest import plugin, request, route, service, snapshot
from tollway.config import load_settings
from tollway.errors import ConfigError

FORWARDED = {"Host": "internal:8000", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.com",
             "X-Forwarded-Port": "443", "X-Forwarded-Path": "/edge/mock/p", "X-Forwarded-Prefix": "/edge",
             "X-Forwarded-For": "203.0.113.7"}


def setup(proxy, echo_upstream: int, **route_fields) -> None:  # type: ignore[no-untyped-def]
    svc = service(echo_upstream)
    proxy.apply(snapshot([svc], [route(svc, ["/mock"], name="mock", **route_fields)]))


@pytest.mark.parametrize("trusted_ips", ["127.0.0.1", "127.0.0.0/8,::1", "0.0.0.0/0,::/0"])
def test_a_trusted_client_forwarded_headers_reach_the_upstream(make_proxy, echo_upstream, trusted_ips):
    proxy = make_proxy(trusted_ips=trusted_ips)
    setup(proxy, echo_upstream)
    headers = request(proxy.port, "GET", "/mock/p", headers=FORWARDED).json()["headers"]
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == "api.example.com"
    assert headers["x-forwarded-port"] == "443"
    assert headers["x-forwarded-path"] == "/edge/mock/p"
    assert headers["x-forwarded-prefix"] == "/edge"
    assert headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"  # appended to, as always
    assert headers["x-real-ip"] == "127.0.0.1"


@pytest.mark.parametrize("trusted_ips", ["", "10.0.0.0/8", "::1"])
def test_anyone_else_has_them_replaced(make_proxy, echo_upstream, trusted_ips):
    proxy = make_proxy(trusted_ips=trusted_ips)
    setup(proxy, echo_upstream)
    headers = request(proxy.port, "GET", "/mock/p", headers=FORWARDED).json()["headers"]
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "internal"
    assert headers["x-forwarded-port"] == str(proxy.port)
    assert headers["x-forwarded-path"] == "/mock/p"
    assert headers["x-forwarded-prefix"] == "/mock"


def test_an_https_only_route_believes_a_trusted_x_forwarded_proto(make_proxy, echo_upstream):
    trusted = make_proxy(trusted_ips="127.0.0.1")
    setup(trusted, echo_upstream, protocols=["https"], https_redirect_status_code=301)
    assert request(trusted.port, "GET", "/mock/p", headers=FORWARDED).status == 200
    plain = request(trusted.port, "GET", "/mock/p?a=1", headers={**FORWARDED, "X-Forwarded-Proto": "http"})
    assert plain.status == 301
    assert plain.headers["location"] == "https://api.example.com/mock/p?a=1"
    untrusted = make_proxy()
    setup(untrusted, echo_upstream, protocols=["https"])
    refused = request(untrusted.port, "GET", "/mock/p", headers=FORWARDED)
    assert refused.status == 426 and refused.json() == {"message": "Please use HTTPS protocol"}


def test_a_trusted_peer_names_the_client_in_x_real_ip(make_proxy, echo_upstream, recorder):
    proxy = make_proxy(trusted_ips="127.0.0.1")
    svc = service(echo_upstream)
    proxy.apply(snapshot([svc], [route(svc, ["/mock"], name="mock")], plugins=[plugin("billable")]))
    headers = request(proxy.port, "GET", "/mock/p", headers={"X-Real-IP": "198.51.100.9"}).json()["headers"]
    assert headers["x-real-ip"] == "198.51.100.9"
    assert headers["x-forwarded-for"] == "198.51.100.9"  # no X-Forwarded-For came: the client, as Kong
    chained = request(proxy.port, "GET", "/mock/p", headers={"X-Real-IP": "198.51.100.9",
                                                             "X-Forwarded-For": "198.51.100.9"}).json()
    assert chained["headers"]["x-real-ip"] == "198.51.100.9"
    assert chained["headers"]["x-forwarded-for"] == "198.51.100.9, 127.0.0.1"  # the peer appended
    assert recorder.addresses == [("127.0.0.1", "198.51.100.9")] * 2  # plugins see both, as Kong's PDK


@pytest.mark.parametrize("value", ["not-an-address", "", "198.51.100.9:5555"])
def test_an_x_real_ip_that_is_no_address_leaves_the_peer(make_proxy, echo_upstream, value):
    proxy = make_proxy(trusted_ips="127.0.0.1")
    setup(proxy, echo_upstream)
    headers = request(proxy.port, "GET", "/mock/p", headers={"X-Real-IP": value}).json()["headers"]
    assert headers["x-real-ip"] == "127.0.0.1"


def test_an_untrusted_client_cannot_name_another(make_proxy, echo_upstream):
    proxy = make_proxy(trusted_ips="10.0.0.0/8")
    setup(proxy, echo_upstream)
    headers = request(proxy.port, "GET", "/mock/p", headers={"X-Real-IP": "198.51.100.9"}).json()["headers"]
    assert headers["x-real-ip"] == "127.0.0.1" and headers["x-forwarded-for"] == "127.0.0.1"


@pytest.mark.parametrize(("recursive", "client"), [("off", "10.0.0.5"), ("on", "203.0.113.7")])
def test_x_forwarded_for_as_real_ip_header(make_proxy, echo_upstream, recursive, client):
    proxy = make_proxy(trusted_ips="127.0.0.1,10.0.0.0/8", real_ip_header="X-Forwarded-For",
                       real_ip_recursive=recursive)
    setup(proxy, echo_upstream)
    headers = request(proxy.port, "GET", "/mock/p",
                      headers={"X-Forwarded-For": "192.0.2.1, 203.0.113.7, 10.0.0.5"}).json()["headers"]
    assert headers["x-real-ip"] == client
    assert headers["x-forwarded-for"] == "192.0.2.1, 203.0.113.7, 10.0.0.5, 127.0.0.1"


def test_real_ip_header_setting_is_checked() -> None:
    assert load_settings(environ={}).real_ip_header == "X-Real-IP"
    assert load_settings(environ={}, real_ip_header="CF-Connecting-IP").real_ip_header == "CF-Connecting-IP"
    for bad in ("X Real IP", "", "proxy_protocol"):
        with pytest.raises(ConfigError):
            load_settings(environ={}, real_ip_header=bad)


def test_trusted_ips_setting_is_checked() -> None:
    assert load_settings(environ={}, trusted_ips=" 10.0.0.1, 10.1.0.0/16 ,::1").trusted_ips == \
        "10.0.0.1/32,10.1.0.0/16,::1/128"
    assert load_settings(environ={}, trusted_ips="::ffff:10.0.0.0/104").trusted_ips == "10.0.0.0/8"
    with pytest.raises(ConfigError, match="trusted_ips"):
        load_settings(environ={}, trusted_ips="lb.example.com")
