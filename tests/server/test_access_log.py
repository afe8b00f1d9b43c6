"""The proxy's access log on a real node with the mock upstream: a line per call, in text or JSON,
to a file that two workers append to or to stdout; calls the gateway answers itself are logged
too; off writes nothing, and a reload can turn it on; bad settings are refused; a moved file is
opened again."""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.server.nodes import Node, tollway
from tollway.config import Settings

# A text line: CLIENT - CONSUMER [TIME] "METHOD URI PROTOCOL" STATUS BYTES "REFERER" "AGENT" key=value...
TEXT_LINE = re.compile(
    r'(?P<client>\S+) - (?P<consumer>\S+) \[(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\] '
    r'"(?:(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/1\.[01]|-)" (?P<status>\d{3}) (?P<response_bytes>\d+) '
    r'"(?P<referer>[^"]*)" "(?P<agent>[^"]*)" request_bytes=(?P<request_bytes>\d+) kong_ms=(?P<kong>-?\d+) '
    r'upstream_ms=(?P<upstream>-?\d+) request_ms=(?P<request>-?\d+) service=(?P<service>\S+) route=(?P<route>\S+)$')
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


def _start(settings: Settings, upstream: int, **env: str) -> Node:
    node = Node(settings, **env)
    node.bootstrap()
    node.start()
    admin = [
        node.post("/services/", name="mock", url=f"http://127.0.0.1:{upstream}"),
        node.post("/services/mock/routes", **{"paths[]": "/mock", "name": "mock-route"}),
        node.post("/routes/mock-route/plugins", name="key-auth"),
        node.post("/consumers/", username="poppy"),
        node.post("/consumers/poppy/key-auth/", key="poppy-secret"),
        node.post("/services/", name="down", url=f"http://127.0.0.1:{free_port()}"),  # nothing listens there
        node.post("/services/down/routes", **{"paths[]": "/down", "name": "down-route"}),
    ]
    assert [r.status_code for r in admin] == [201] * len(admin)
    node.wait_until(lambda: _applied(node), timeout=5, what="every worker applied the configuration")
    return node


def _applied(node: Node) -> bool:
    status = node.json("/status")
    versions = {worker["config_version"] for worker in status["workers"]}
    return len(status["workers"]) == node.settings.workers and versions == {status["config_version"]}


def _proxy_made_calls(node: Node) -> list[int]:
    """A 401 (no key), a 404 (no route), a 503 (upstream down), a client that gives up (499) and a
    request that is not HTTP (400)."""
    codes = [httpx.get(node.proxy + "/mock/anything", timeout=10).status_code,
             httpx.get(node.proxy + "/nowhere", timeout=10).status_code,
             httpx.get(node.proxy + "/down/x", timeout=10).status_code]
    host, port = node.settings.proxy_listen.split(":")
    with socket.create_connection((host, int(port))) as sock:  # gives up after 0.3 s, with a reset
        sock.sendall(b"GET /mock/delay/1500 HTTP/1.1\r\nHost: gw\r\napikey: poppy-secret\r\n\r\n")
        time.sleep(0.3)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"NOT HTTP\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
    return codes


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.close()


def test_json_lines_from_two_workers_are_whole_counted_and_follow_a_moved_file(
        sqlite_settings: Settings, echo_upstream: int, nodes: list[Node]) -> None:
    settings = sqlite_settings.with_overrides(workers=2)
    node = _start(settings, echo_upstream, TOLLWAY_ACCESS_LOG="logs/access.log", TOLLWAY_ACCESS_LOG_FORMAT="json")
    nodes.append(node)
    path = Path(settings.prefix) / "logs" / "access.log"
    agent = "load/" + "x" * 1500  # long lines: a torn write would show
    threads, per_thread = 8, 40

    def load(number: int) -> None:
        with httpx.Client(timeout=10) as client:
            for call in range(per_thread):  # a new connection each time: both workers accept
                response = client.get(f"{node.proxy}/mock/t{number}?call={call}",
                                      headers={"apikey": "poppy-secret", "user-agent": agent, "connection": "close"})
                assert response.status_code == 200

    workers = [threading.Thread(target=load, args=(number,)) for number in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert _proxy_made_calls(node) == [401, 404, 503]
    first = threads * per_thread + 5
    node.wait_until(lambda: len(_lines(path)) >= first, timeout=5, what="the first calls' lines written")
    workers_status = node.json("/status")["workers"]
    served = [worker["requests_total"] for worker in workers_status]
    assert len(served) == 2 and min(served) > 0, served  # both workers appended to the file
    assert [worker["access_log_dropped"] for worker in workers_status] == [0, 0]

    path.rename(path.with_name("access.log.1"))  # as logrotate does; no signal
    with httpx.Client(timeout=10) as client:
        for call in range(10):
            assert client.get(f"{node.proxy}/mock/after?call={call}", headers={"apikey": "poppy-secret"}
                              ).status_code == 200
    node.wait_until(lambda: len(_lines(path)) == 10, timeout=5, what="the moved file opened again")
    assert node.stop() == 0

    rotated = [json.loads(line) for line in _lines(path.with_name("access.log.1"))]  # each line whole
    after = [json.loads(line) for line in _lines(path)]
    assert len(rotated) == first
    assert sorted(entry["uri"] for entry in after) == sorted(f"/mock/after?call={n}" for n in range(10))
    ok = [entry for entry in rotated if entry["status"] == 200]
    assert sorted(entry["uri"] for entry in ok) == sorted(
        f"/mock/t{number}?call={call}" for number in range(threads) for call in range(per_thread))
    entry = ok[0]
    assert ISO_MS.match(entry["time"]) and entry["client_ip"] == "127.0.0.1" and entry["consumer"] == "poppy"
    assert (entry["method"], entry["protocol"], entry["service"], entry["route"]) == ("GET", "HTTP/1.1", "mock",
                                                                                     "mock-route")
    assert entry["user_agent"] == agent and entry["referer"] is None
    assert entry["request_bytes"] > len(agent) and entry["response_bytes"] > 100
    latencies = entry["latencies"]
    assert 0 <= latencies["kong"] <= latencies["request"] and 0 <= latencies["proxy"] <= latencies["request"]
    by_status = {entry["status"]: entry for entry in rotated if entry["status"] != 200}
    assert set(by_status) == {400, 401, 404, 499, 503}
    assert by_status[400]["method"] is None and by_status[400]["uri"] is None and by_status[400]["route"] is None
    assert by_status[401]["consumer"] is None and by_status[401]["route"] == "mock-route"
    assert by_status[401]["latencies"]["proxy"] == -1
    assert by_status[404]["route"] is None and by_status[404]["service"] is None
    assert by_status[404]["uri"] == "/nowhere" and by_status[404]["response_bytes"] > 0
    assert by_status[503]["service"] == "down"
    assert by_status[499]["consumer"] == "poppy" and by_status[499]["response_bytes"] == 0
    assert 250 <= by_status[499]["latencies"]["request"] < 1500  # the client gave up after 0.3 s


def test_text_lines_to_stdout(sqlite_settings: Settings, echo_upstream: int, nodes: list[Node]) -> None:
    node = _start(sqlite_settings, echo_upstream, TOLLWAY_ACCESS_LOG="stdout")
    nodes.append(node)
    response = httpx.get(node.proxy + "/mock/echo?q=1", timeout=10,
                         headers={"apikey": "poppy-secret", "user-agent": 'say "hi"', "referer": "http://a.test/"})
    assert response.status_code == 200
    assert _proxy_made_calls(node) == [401, 404, 503]

    def access_lines() -> list[re.Match[str]]:
        return [found for line in node.log_path.read_text().splitlines() if (found := TEXT_LINE.match(line))]

    node.wait_until(lambda: len(access_lines()) == 6, timeout=5, what="six access lines on stdout")
    lines = {int(found["status"]): found for found in access_lines()}
    ok = lines[200]
    assert (ok["client"], ok["consumer"], ok["method"], ok["uri"]) == ("127.0.0.1", "poppy", "GET", "/mock/echo?q=1")
    assert ok["agent"] == r"say \x22hi\x22" and ok["referer"] == "http://a.test/"
    assert (ok["service"], ok["route"]) == ("mock", "mock-route")
    assert int(ok["response_bytes"]) == len(response.content) + len(_head(response)) > 0
    assert int(ok["upstream"]) >= 0 and int(ok["request"]) >= int(ok["kong"]) >= 0
    assert (lines[401]["consumer"], lines[401]["upstream"], lines[401]["route"]) == ("-", "-1", "mock-route")
    assert (lines[404]["service"], lines[404]["route"], lines[404]["uri"]) == ("-", "-", "/nowhere")
    assert (lines[503]["service"], lines[499]["consumer"]) == ("down", "poppy")
    assert (lines[400]["method"], lines[400]["client"], lines[400]["route"]) == (None, "127.0.0.1", "-")


def _head(response: httpx.Response) -> bytes:
    """The response head as the proxy wrote it (HTTP/1.1 status line, headers as received)."""
    lines = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n".encode()]
    lines += [name + b": " + value + b"\r\n" for name, value in response.headers.raw]
    return b"".join(lines) + b"\r\n"


def test_off_writes_nothing_and_a_reload_turns_it_on(sqlite_settings: Settings, echo_upstream: int,
                                                     nodes: list[Node]) -> None:
    node = _start(sqlite_settings, echo_upstream)  # access_log defaults to off
    nodes.append(node)
    assert httpx.get(node.proxy + "/mock/x", headers={"apikey": "poppy-secret"}, timeout=10).status_code == 200
    assert _proxy_made_calls(node) == [401, 404, 503]
    logs = Path(sqlite_settings.prefix) / "logs"
    assert not logs.exists() or os.listdir(logs) == []

    env = dict(node.env, TOLLWAY_ACCESS_LOG="logs/access.log")
    result = tollway(node.settings, "reload", env=env)  # new workers, which open the file
    assert result.returncode == 0, result.stderr
    assert httpx.get(node.proxy + "/mock/on", headers={"apikey": "poppy-secret"}, timeout=10).status_code == 200
    assert node.stop() == 0
    assert not [line for line in node.log_path.read_text().splitlines()
                if TEXT_LINE.match(line) or line.startswith("{")]
    lines = [TEXT_LINE.match(line) for line in (logs / "access.log").read_text().splitlines()]
    assert [(found["uri"], found["status"]) for found in lines if found] == [("/mock/on", "200")] and len(lines) == 1


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("TOLLWAY_ACCESS_LOG_FORMAT", "xml",
     "invalid value 'xml' for setting 'access_log_format' (from TOLLWAY_ACCESS_LOG_FORMAT): "
     "expected one of text, json"),
    ("TOLLWAY_ACCESS_LOG", " ",
     "invalid value ' ' for setting 'access_log' (from TOLLWAY_ACCESS_LOG): expected off, stdout or a file path"),
    ("TOLLWAY_ACCESS_LOG", "/proc/no-such-folder/access.log", "cannot open access_log /proc/no-such-folder/access.log"),
])
def test_a_bad_setting_is_one_clear_error(sqlite_settings: Settings, variable: str, value: str, message: str) -> None:
    node = Node(sqlite_settings)
    node.bootstrap()  # a start that gets as far as the files
    env = dict(node.env, **{variable: value})
    result = tollway(sqlite_settings, "start", env=env, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
