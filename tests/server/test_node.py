"""A started node end to end: workers, configuration pushes, worker restarts, reload and stop."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.server.nodes import Node, running, tollway
from tollway.config import Settings


@pytest.fixture
def node(settings: Settings, echo_upstream: int) -> Iterator[Node]:
    with running(settings.with_overrides(workers=2)) as n:
        n.upstream = f"http://127.0.0.1:{echo_upstream}"  # type: ignore[attr-defined]
        yield n


def _seed(node: Node) -> None:
    assert node.post("/services/", name="mock", url=node.upstream).status_code == 201  # type: ignore[attr-defined]
    assert node.post("/services/mock/routes", **{"paths[]": "/mock", "name": "mock"}).status_code == 201
    assert node.post("/routes/mock/plugins", name="key-auth").status_code == 201
    assert node.post("/consumers/", username="poppy").status_code == 201
    assert node.post("/consumers/poppy/key-auth/", key="poppy-secret").status_code == 201


def _all_workers_applied(node: Node) -> bool:
    status = node.json("/status")
    extra = status.get("node") or status
    versions = {w["config_version"] for w in extra["workers"]}
    return len(extra["workers"]) == node.settings.workers and versions == {extra["config_version"]}


def _get(node: Node, path: str, **headers: str) -> httpx.Response:
    return httpx.get(node.proxy + path, headers={"connection": "close", **headers}, timeout=10)


def test_seed_route_proxies_with_key_auth(node: Node) -> None:
    _seed(node)
    node.wait_until(lambda: _get(node, "/mock/requests", apikey="poppy-secret").status_code == 200,
                    timeout=2, what="route applied")
    response = _get(node, "/mock/requests", apikey="poppy-secret")
    assert response.json()["path"] == "/requests"
    assert response.json()["headers"]["x-consumer-username"] == "poppy"
    assert _get(node, "/mock/requests").status_code == 401


def test_an_admin_write_is_applied_by_every_worker_within_a_second(node: Node) -> None:
    _seed(node)
    started = time.monotonic()
    node.wait_until(lambda: _all_workers_applied(node), timeout=1.0, what="every worker applied the config")
    node.post("/services/mock/routes", **{"paths[]": "/late", "name": "late"})
    node.wait_until(lambda: _all_workers_applied(node), timeout=1.0, what="every worker applied the route")
    assert time.monotonic() - started < 3
    # Fresh connections land on either worker; every one of them knows the new route.
    codes = {_get(node, "/late/x", apikey="poppy-secret").status_code for _ in range(30)}
    assert codes == {200}


def test_a_killed_worker_is_replaced_and_the_node_keeps_serving(node: Node) -> None:
    import os
    import signal

    _seed(node)
    node.wait_until(lambda: _all_workers_applied(node), timeout=2)
    before = node.worker_pids()
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    assert {_get(node, "/mock/x", apikey="poppy-secret").status_code for _ in range(10)} == {200}
    node.wait_until(lambda: len(node.worker_pids()) == 2 and before[0] not in node.worker_pids(),
                    timeout=5, what="a new worker")
    assert "died with signal SIGKILL; restarting it" in node.log()


def test_reload_applies_a_changed_plugins_list(settings: Settings) -> None:
    node = Node(settings, TOLLWAY_PLUGINS="key-auth")
    node.bootstrap()
    node.start()
    try:
        refused = node.post("/plugins", name="billable")
        assert refused.status_code == 400
        assert "plugin 'billable' not enabled" in refused.text
        env = dict(node.env, TOLLWAY_PLUGINS="bundled,billable")
        result = tollway(settings, "reload", env=env)  # bundled has plugins whose tables are missing
        assert result.returncode == 1 and "run 'tollway migrations up'" in result.stderr
        assert node.post("/plugins", name="billable").status_code == 400  # the node kept its settings
        assert tollway(settings, "migrations", "up", env=env).returncode == 0
        result = tollway(settings, "reload", env=env)
        assert result.returncode == 0, result.stderr
        assert node.post("/plugins", name="billable").status_code == 201
    finally:
        node.close()


def _config_version(node: Node) -> int:
    status = node.json("/status")
    return int((status.get("node") or status)["config_version"])


def test_stop_lets_an_in_flight_request_finish(node: Node) -> None:
    before = _config_version(node)
    assert node.post("/services/", name="slow", url=node.upstream).status_code == 201  # type: ignore[attr-defined]
    assert node.post("/services/slow/routes", **{"paths[]": "/slow"}).status_code == 201
    # The master takes up a write a moment later: until then its workers hold the version before it.
    node.wait_until(lambda: _config_version(node) > before and _all_workers_applied(node), timeout=5,
                    what="the route at every worker")
    result: dict[str, int] = {}

    def call() -> None:
        result["status"] = _get(node, "/slow/delay/1500").status_code

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.5)
    stopped = tollway(node.settings, "stop", env=node.env)
    caller.join(10)
    assert stopped.returncode == 0, stopped.stderr
    assert result == {"status": 200}
    assert node.proc is not None and node.proc.wait(5) == 0


def test_reload_under_load_drops_no_request(node: Node) -> None:
    _seed(node)
    node.wait_until(lambda: _all_workers_applied(node), timeout=2)
    codes: list[int] = []
    done = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            while not done.is_set():
                try:
                    codes.append(client.get(node.proxy + "/mock/x", headers={"apikey": "poppy-secret"}).status_code)
                except httpx.HTTPError as exc:
                    codes.append(-1)
                    print("error", exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    result = tollway(node.settings, "reload", env=node.env)
    time.sleep(0.5)
    done.set()
    for t in threads:
        t.join(10)
    assert result.returncode == 0, result.stderr
    assert codes and set(codes) == {200}


def test_status_counters_count_from_the_start_through_reloads_and_a_killed_worker(node: Node) -> None:
    _seed(node)
    node.wait_until(lambda: _all_workers_applied(node), timeout=2)
    sent = 0
    with httpx.Client(timeout=10) as client:
        for round_ in range(3):
            for _ in range(50):
                assert client.get(node.proxy + "/mock/x", headers={"apikey": "poppy-secret"}).status_code == 200
                sent += 1
            if round_ == 0:
                assert tollway(node.settings, "reload", env=node.env).returncode == 0
            elif round_ == 1:
                time.sleep(1.5)  # a worker reports its counters every second
                os.kill(node.worker_pids()[0], signal.SIGKILL)
                node.wait_until(lambda: len(node.worker_pids()) == 2 and _all_workers_applied(node), timeout=10)
    node.wait_until(lambda: node.json("/status")["server"]["total_requests"] >= sent, timeout=5,
                    what=f"GET /status counting all {sent} requests")
    assert node.json("/status")["server"]["total_requests"] == sent


def _nices(pid: int) -> dict[int, int]:
    """The nice value of every thread of a process."""
    return {int(tid): os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a nice value per thread is Linux's")
def test_the_flush_yields_the_cpu_to_the_workers(node: Node) -> None:
    assert node.proc is not None
    master = node.proc.pid
    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    node.wait_until(lambda: 19 in _nices(master).values(), what="a flusher thread at nice 19")
    assert _nices(master)[master] == ours  # the Admin API's thread keeps its priority
    workers = node.worker_pids()
    assert len(workers) == 2
    for pid in workers:
        assert set(_nices(pid).values()) == {ours}
