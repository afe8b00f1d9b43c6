"""The proxy's per-request Python cost, with no sockets: what the interpreter spends on one call.

    .venv/bin/python bench/hot_path.py [--requests 200000] [--plugins key-auth,billable] [--profile]
                                       [--access-log off|stdout|FILE] [--access-log-format text|json]
                                       [--rate-limiting '{"hide_client_headers": true}']

A ClientProtocol and a pooled UpstreamConnection are driven with in-memory transports: each
iteration feeds a request head to the client side and a canned 200 response to the upstream side,
exactly as the event loop would deliver them, so everything the hot path does runs except the
socket system calls (the billable spool is real: a file in a temporary directory). It prints microseconds per
request; `--profile` adds the top functions by cProfile. The figure is for comparing changes to
the hot path on one machine; the end-to-end numbers come from bench/run.py.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tollway.config import load_settings  # noqa: E402
from tollway.counters import SharedCounters  # noqa: E402
from tollway.metering.spool import SpoolWriter  # noqa: E402
from tollway.proxy.chain import handler_class  # noqa: E402
from tollway.proxy.protocol import ClientProtocol  # noqa: E402
from tollway.proxy.server import ProxyServer  # noqa: E402
from tollway.proxy.upstream import PoolKey, UpstreamConnection  # noqa: E402
from tollway.store.entities.plugins import config_field as plugin_config_field  # noqa: E402
from tollway.store.entities.validation import validate  # noqa: E402

UPSTREAM_PORT = 9
WARMUP = 1000
API_KEY = "hot-path-key"
REQUEST = (b"GET /bench HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n"
           b"apikey: " + API_KEY.encode() + b"\r\n\r\n")
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 29 Nov 2026 14:00:00 GMT\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")


class MemoryTransport(asyncio.Transport):
    """Counts what is written; reading and closing are no-ops."""

    def __init__(self, peer: tuple[str, int], local: tuple[str, int]) -> None:
        super().__init__()
        self.extra = {"peername": peer, "sockname": local}
        self.written = 0
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def write(self, data: Any) -> None:
        self.written += len(data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.written += len(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True


def _snapshot(plugins: list[str], rate_limiting: dict[str, Any] | None = None) -> dict[str, Any]:
    service = {"id": "s1", "name": "bench", "protocol": "http", "host": "127.0.0.1", "port": UPSTREAM_PORT,
               "path": None, "retries": 5, "connect_timeout": 60000, "write_timeout": 60000,
               "read_timeout": 60000, "enabled": True, "tls_verify": None, "tags": None}
    route = {"id": "r1", "name": "bench", "service": {"id": "s1"}, "protocols": ["http", "https"],
             "methods": None, "hosts": None, "paths": ["/bench"], "headers": None, "strip_path": True,
             "preserve_host": False, "regex_priority": 0, "path_handling": "v0"}
    consumer = {"id": "c1", "username": "bench", "custom_id": None}
    rows = []
    for number, name in enumerate(plugins):
        config: dict[str, Any] = {}
        if name == "key-auth":
            config = {"key_names": ["apikey"], "hide_credentials": False, "anonymous": None, "key_in_header": True,
                      "key_in_query": True, "key_in_body": False, "run_on_preflight": True}
        elif name == "acl":  # the consumer is in the group let in: the call passes with X-Consumer-Groups
            config = {"allow": ["premium"], "deny": None, "hide_groups_header": False,
                      "always_use_authenticated_groups": False, "include_consumer_groups": False}
        elif name == "rate-limiting":  # the local policy, with a limit never reached: every call counted
            config, errors = validate(plugin_config_field(name)["fields"],
                                      {"second": 10**12, "hour": 10**12, **(rate_limiting or {})})
            if errors:
                raise SystemExit(f"--rate-limiting: {errors}")
        elif name == "prometheus":  # every per-request metric, per consumer
            config = {"per_consumer": True, "status_code_metrics": True, "latency_metrics": True,
                      "bandwidth_metrics": True, "upstream_health_metrics": False}
        rows.append({"id": f"p{number}", "name": name, "enabled": True, "config": config, "service": None,
                     "route": {"id": "r1"} if name in ("key-auth", "acl", "rate-limiting") else None,
                     "consumer": None})
    return {"version": 1, "services": [service], "routes": [route], "consumers": [consumer], "plugins": rows,
            "keyauth_credentials": [{"id": "k1", "consumer": {"id": "c1"}, "key": API_KEY}],
            "acls": [{"id": "a1", "consumer": {"id": "c1"}, "group": "premium", "created_at": 1}]}


async def _run(requests: int, plugins: list[str], profile: bool, prefix: Path, access_log: str = "off",
               access_log_format: str = "text", rate_limiting_config: dict[str, Any] | None = None) -> float:
    settings = load_settings(environ={}, prefix=str(prefix), proxy_listen="127.0.0.1:8000",
                             plugins=",".join(["bundled", *plugins]), access_log=access_log,
                             access_log_format=access_log_format)
    spool = SpoolWriter(settings.spool_dir, "hot-path") if "billable" in plugins else None
    server = ProxyServer(settings, spool=spool)
    server._setup()
    if "rate-limiting" in plugins:  # the node's shared counters, as a worker maps them
        counters = SharedCounters(prefix / "shared_counters", 4096, create=True)
        rate_limiting = handler_class("rate-limiting")
        assert rate_limiting is not None
        rate_limiting.init_worker(SimpleNamespace(counters=counters, writer_id="hot-path", reports={}))
    server.apply(_snapshot(plugins, rate_limiting_config))
    client = ClientProtocol(server)
    client_transport = MemoryTransport(("127.0.0.1", 40000), ("127.0.0.1", 8000))
    client.connection_made(client_transport)
    upstream = UpstreamConnection(server.pool, PoolKey("http", "127.0.0.1", UPSTREAM_PORT, True))
    upstream_transport = MemoryTransport(("127.0.0.1", UPSTREAM_PORT), ("127.0.0.1", 40001))
    upstream.connection_made(upstream_transport)
    server.pool.release(upstream)
    # with Redis, access awaits: the loop runs until the request is out
    waits = (rate_limiting_config or {}).get("policy") == "redis"

    def one() -> None:
        client.data_received(REQUEST)
        upstream.data_received(RESPONSE)

    async def one_waiting() -> None:
        sent = upstream_transport.written
        client.data_received(REQUEST)
        for _ in range(10_000):
            if upstream_transport.written != sent:
                break
            await asyncio.sleep(0)
        else:
            raise SystemExit("the request never reached the upstream (is Redis running?)")
        upstream.data_received(RESPONSE)

    for _ in range(WARMUP):
        if waits:
            await one_waiting()
        else:
            one()
    await asyncio.sleep(0)
    profiler = cProfile.Profile() if profile else None
    written = client_transport.written
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    for done in range(requests):
        if waits:
            await one_waiting()
        else:
            one()
        if done % 256 == 0:
            await asyncio.sleep(0)  # what the loop would run between reads (scheduled log phases)
    elapsed = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    per_response = (client_transport.written - written) / requests
    if not client_transport.written or per_response < len(b"HTTP/1.1 200 OK\r\n"):
        raise SystemExit("the proxy wrote no responses: the hot path is not running")
    if spool is not None:
        spool.close()
        lines = sum(path.read_bytes().count(b"\n") for path in Path(settings.spool_dir).glob("*.spool"))
        if lines != requests + WARMUP:
            raise SystemExit(f"billable metered {lines} calls of {requests + WARMUP}")
    file = settings.access_log_file
    if server.access_log is not None:
        server.access_log.close()
        if file is not None and (lines := file.read_bytes().count(b"\n")) != requests + WARMUP:
            raise SystemExit(f"the access log has {lines} lines for {requests + WARMUP} calls")
    return elapsed / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--plugins", default="key-auth,billable", help="comma separated, or 'none'")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    parser.add_argument("--access-log", default="off", help="off, stdout or a file (relative: in a temporary prefix)")
    parser.add_argument("--access-log-format", default="text", choices=("text", "json"))
    parser.add_argument("--rate-limiting", default="{}",
                        help='rate-limiting config fields (JSON) over second and hour limits never reached, '
                             'e.g. \'{"hide_client_headers": true}\' or '
                             '\'{"policy": "redis", "redis": {"host": "127.0.0.1"}}\'')
    args = parser.parse_args()
    plugins = [] if args.plugins == "none" else [p for p in args.plugins.split(",") if p]
    with tempfile.TemporaryDirectory() as prefix:
        micros = uvloop.run(_run(args.requests, plugins, args.profile, Path(prefix), args.access_log,
                                 args.access_log_format, json.loads(args.rate_limiting)))
    print(f"{micros:.2f} us per request ({'+'.join(plugins) or 'no plugins'}, {args.requests} requests)")


if __name__ == "__main__":
    main()
