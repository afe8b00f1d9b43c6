"""TLS on both sides: the proxy serves TLS with a certificate of the settings; https upstreams are verified."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.proxy.conftest import plugin, raw_exchange, read_head, request, route, service, snapshot
from tollway.errors import ConfigError
from tollway.proxy.server import ProxyServer


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for localhost and 127.0.0.1: (cert.pem, key.pem)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return str(cert), str(key)


@pytest.fixture
def tls_proxy(make_proxy, certificate):
    cert, key = certificate
    return make_proxy(proxy_ssl_cert=cert, proxy_ssl_cert_key=key)


def https_request(port: int, cafile: str, method: str, path: str) -> tuple[int, bytes, str | None]:
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["h2", "http/1.1"])
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
        assert conn.sock is not None
        return resp.status, body, conn.sock.selected_alpn_protocol()
    finally:
        conn.close()


def test_proxy_serves_tls_with_http11_alpn_and_forwards_https_proto(tls_proxy, echo_upstream, certificate):
    svc = service(echo_upstream)
    tls_proxy.apply(snapshot([svc], [route(svc, ["/tls"], protocols=["https"])]))
    status, body, alpn = https_request(tls_proxy.port, certificate[0], "GET", "/tls/x")
    assert status == 200
    assert alpn == "http/1.1"
    headers = json.loads(body)["headers"]
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-port"] == str(tls_proxy.port)


def test_plain_http_to_the_tls_port_gets_no_response(tls_proxy, echo_upstream):
    svc = service(echo_upstream)
    tls_proxy.apply(snapshot([svc], [route(svc, ["/"])]))
    with socket.create_connection(("127.0.0.1", tls_proxy.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            answer = b""
        assert not answer.startswith(b"HTTP/")


@pytest.mark.parametrize("redirect", [{}, {"https_redirect_status_code": 426}], ids=["unset", "426"])
def test_https_only_route_answers_426_over_plain_http(proxy, recording_upstream, recorder, redirect):
    svc = service(recording_upstream.port)
    proxy.apply(snapshot([svc], [route(svc, ["/tls"], protocols=["https"], **redirect)],
                         plugins=[plugin("billable")]))
    resp = request(proxy.port, "GET", "/tls?a=1")
    assert resp.status == 426
    assert resp.json() == {"message": "Please use HTTPS protocol"}
    assert resp.headers["upgrade"] == "TLS/1.2, HTTP/1.1"
    assert ("Connection", "Upgrade") in resp.header_list
    assert "location" not in resp.headers
    assert recording_upstream.received == b""
    assert [m["status"] for m in recorder.metered] == [426]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_https_only_route_with_a_redirect_code_redirects_plain_http_to_the_same_url(
        proxy, recording_upstream, recorder, status):
    svc = service(recording_upstream.port)
    proxy.apply(snapshot([svc], [route(svc, ["/tls"], protocols=["https"], https_redirect_status_code=status)],
                         plugins=[plugin("billable")]))
    # The path before strip_path, the query as sent, and the Host lower-cased without its port.
    resp = request(proxy.port, "GET", "/tls/a%20b?x=1&y=%2F&z", headers={"Host": "API.Example.com:8000"})
    assert resp.status == status
    assert resp.headers["location"] == "https://api.example.com/tls/a%20b?x=1&y=%2F&z"
    assert resp.headers["content-length"] == "0" and resp.body == b""
    assert "content-type" not in resp.headers and "upgrade" not in resp.headers
    assert recording_upstream.received == b""
    assert [m["status"] for m in recorder.metered] == [status]


def test_redirects_of_pipelined_requests_each_point_to_their_own_target(proxy, recording_upstream):
    svc = service(recording_upstream.port)
    proxy.apply(snapshot([svc], [route(svc, ["/tls"], protocols=["https"], https_redirect_status_code=308)]))
    answer = raw_exchange(proxy.port, b"GET /tls/one?n=1 HTTP/1.1\r\nHost: a.test\r\n\r\n"
                                      b"HEAD /tls/two HTTP/1.1\r\nHost: [::1]:9443\r\n\r\n"
                                      b"GET http://b.test/tls/three?n=3 HTTP/1.1\r\nHost: b.test\r\n"
                                      b"Connection: close\r\n\r\n")
    heads = answer.split(b"\r\n\r\n")
    assert [h.split(b"\r\n")[0] for h in heads[:3]] == [b"HTTP/1.1 308 Permanent Redirect"] * 3
    assert [line for h in heads for line in h.split(b"\r\n") if line.startswith(b"Location: ")] == [
        b"Location: https://a.test/tls/one?n=1",
        b"Location: https://[::1]/tls/two",
        b"Location: https://b.test/tls/three?n=3",  # an absolute-form target: its path and query
    ]
    assert heads[3:] == [b""]  # no bodies, the HEAD's included
    assert recording_upstream.received == b""


def test_a_redirect_for_a_request_without_host_names_the_address_it_reached(proxy, recording_upstream):
    svc = service(recording_upstream.port)
    proxy.apply(snapshot([svc], [route(svc, ["/tls"], protocols=["https"], https_redirect_status_code=301)]))
    answer = raw_exchange(proxy.port, b"GET /tls/old?a=1 HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 301 ")
    assert b"\r\nLocation: https://127.0.0.1/tls/old?a=1\r\n" in answer
    assert recording_upstream.received == b""


def test_https_only_route_with_a_redirect_code_is_proxied_over_tls(tls_proxy, echo_upstream, certificate):
    svc = service(echo_upstream)
    tls_proxy.apply(snapshot([svc], [route(svc, ["/tls"], protocols=["https"], https_redirect_status_code=301)]))
    status, body, _ = https_request(tls_proxy.port, certificate[0], "GET", "/tls/x?q=1")
    assert status == 200
    assert json.loads(body)["headers"]["x-forwarded-proto"] == "https"


def test_unreadable_certificate_is_a_config_error(make_proxy, tmp_path: Path):
    from tests.proxy.conftest import make_proxy_settings
    settings = make_proxy_settings(tmp_path, proxy_ssl_cert=str(tmp_path / "missing.pem"),
                                   proxy_ssl_cert_key=str(tmp_path / "missing.key"))
    with pytest.raises(ConfigError, match="proxy_ssl_cert"):
        ProxyServer(settings)


@pytest.fixture
def https_upstream(raw_upstreams, certificate):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)

    async def answer(reader, writer):
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")
        await writer.drain()
    return raw_upstreams(answer, ssl=context)


def test_https_upstream_with_an_untrusted_certificate_answers_502(proxy, https_upstream, recorder):
    svc = service(https_upstream.port, protocol="https", retries=0)  # tls_verify unset: verification is on
    proxy.apply(snapshot([svc], [route(svc, ["/"], name="r")], plugins=[plugin("billable")]))
    resp = request(proxy.port, "GET", "/")
    assert resp.status == 502
    assert resp.json() == {"message": "An invalid response was received from the upstream server"}
    assert [m["status"] for m in recorder.metered] == [502]


def test_https_upstream_with_tls_verify_false_is_proxied(proxy, https_upstream):
    svc = service(https_upstream.port, protocol="https", tls_verify=False)
    proxy.apply(snapshot([svc], [route(svc, ["/"])]))
    resp = request(proxy.port, "GET", "/")
    assert resp.status == 200 and resp.body == b"secure"
