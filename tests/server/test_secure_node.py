"""A node with TLS on the Admin API and the proxy, and an admin token: the CLI still steers it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.server.nodes import Node, tollway
from tollway.config import Settings

TOKEN = "s3cret-admin-token"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    return cert, key


@pytest.fixture
def secure_node(tmp_path: Path, echo_upstream: int) -> Iterator[Node]:
    cert, key = make_certificate(tmp_path)
    settings: Settings = make_settings(
        tmp_path / "prefix", "sqlite", admin_token=TOKEN, admin_ssl_cert=str(cert), admin_ssl_cert_key=str(key),
        proxy_ssl_cert=str(cert), proxy_ssl_cert_key=str(key))
    node = Node(settings)
    node.admin = "https://" + settings.admin_listen
    node.proxy = "https://" + settings.proxy_listen
    node.bootstrap()
    result = tollway(settings, "start", "--daemon", env=node.env, timeout=90)
    assert result.returncode == 0, result.stderr
    try:
        yield node
    finally:
        tollway(settings, "stop", env=node.env)


def test_the_admin_api_wants_the_token_over_tls(secure_node: Node) -> None:
    with httpx.Client(verify=False, timeout=10) as client:
        denied = client.get(secure_node.admin + "/status")
        assert denied.status_code == 401
        assert "message" in denied.json()
        assert client.get(secure_node.admin + "/status", headers={"Tollway-Admin-Token": TOKEN}).status_code == 200
        assert client.get(secure_node.admin + "/", headers={"Kong-Admin-Token": TOKEN}).status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get("http://" + secure_node.settings.admin_listen + "/status", timeout=5)


def test_the_cli_sends_the_token_and_speaks_tls(secure_node: Node) -> None:
    health = tollway(secure_node.settings, "health", env=secure_node.env)
    assert health.returncode == 0, health.stderr


def test_the_proxy_serves_tls_and_tells_the_upstream(secure_node: Node, echo_upstream: int) -> None:
    headers = {"Tollway-Admin-Token": TOKEN}
    with httpx.Client(verify=False, timeout=10, headers=headers) as admin:
        assert admin.post(secure_node.admin + "/services", data={
            "name": "mock", "url": f"http://127.0.0.1:{echo_upstream}"}).status_code == 201
        assert admin.post(secure_node.admin + "/services/mock/routes", data={"paths[]": "/mock"}).status_code == 201
    secure_node.wait_until(
        lambda: httpx.get(secure_node.proxy + "/mock/x", verify=False, timeout=5).status_code == 200, timeout=3)
    echoed = httpx.get(secure_node.proxy + "/mock/x", verify=False, timeout=5).json()
    assert echoed["headers"]["x-forwarded-proto"] == "https"
