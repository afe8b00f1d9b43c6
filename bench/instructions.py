"""Instructions per proxied call (key-auth + billable, or --plugins), counted by valgrind's callgrind.

    .venv/bin/python bench/instructions.py [--seconds 20] [--skip-real] [--keep DIR]
        [--plugins key-auth,billable,rate-limiting] [--rate-limiting '{"policy": "redis", ...}']
        [--access-log FILE --access-log-format json]

Callgrind counts instructions, not seconds: the same build gives the same count whatever else
the machine is doing, which makes it the measure for comparing two versions of the hot path on a
noisy machine. Two counts:

- `hot_path`: bench/hot_path.py (the Python side, in-memory transports), run for 2,000 and for
  6,000 requests; the difference divided by 4,000, so start-up and warm-up cancel out.
- `real`: a ProxyServer in its own process under callgrind (uvloop, llhttp and the spool
  included; the kernel's part is not counted), with an nginx upstream, while wrk drives it with
  10 connections for --seconds after a warm-up; the count over that window divided by the
  requests wrk completed in it.

With --varying-heads, a third count, `real_varying`: the same, but every request and every
response has a head of its own (wrk sends a counter in X-Request-Id, nginx adds its $request_id
to each response), so no head repeats and llhttp parses every one (see
tollway/proxy/request_repeat.py and response_repeat.py). That is the cost for clients and
upstreams whose heads differ each time.

Both run with PYTHONHASHSEED=0: with random string hashes, dict and set probes vary from run to
run, and so does the count (by about 0.5%). Needs valgrind (callgrind_control,
callgrind_annotate), nginx and wrk. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness.nginx import NginxServer  # noqa: E402
from bench.hot_path import API_KEY, _snapshot  # noqa: E402
from tests.conftest import free_port, wait_for_port  # noqa: E402

PLUGINS = ["key-auth", "billable"]
ACCESS_LOG = {"access_log": "off", "access_log_format": "text"}  # --access-log, --access-log-format
RATE_LIMITING = {"config": "{}"}  # --rate-limiting: hot_path.py's
ENV = {**os.environ, "PYTHONHASHSEED": "0"}

# The proxy process: tests/proxy/serve_proxy.py's server with the plugins of argv[4] (billable: a spool
# in a temporary prefix; rate-limiting: the node's shared counters there, as a worker maps them) and
# the access log settings (argv[3]), run from the project's root.
SERVE = r'''
import asyncio, json, sys, tempfile
from pathlib import Path
from types import SimpleNamespace
import uvloop
from tests.proxy.serve_proxy import main
uvloop.install()
plugins = json.loads(sys.argv[4])
if "rate-limiting" in plugins:
    from tollway.counters import SharedCounters
    from tollway.plugins.rate_limiting.handler import Handler
    counters = SharedCounters(Path(tempfile.mkdtemp()) / "shared_counters", 4096, create=True)
    Handler.init_worker(SimpleNamespace(counters=counters, writer_id="instructions", reports={}))
overrides = {"plugins": ",".join(["bundled", *plugins]), **json.loads(sys.argv[3])}
asyncio.run(main(int(sys.argv[1]), json.loads(sys.argv[2]), overrides, billable="billable" in plugins))
'''


def total(out_file: Path) -> int:
    """Instructions in a callgrind output file."""
    text = subprocess.run(["callgrind_annotate", str(out_file)], capture_output=True, text=True, check=True).stdout
    found = re.search(r"([\d,]+) \([^)]*\)\s+PROGRAM TOTALS", text)
    if found is None:
        raise SystemExit(f"no PROGRAM TOTALS in callgrind_annotate's output for {out_file}")
    return int(found.group(1).replace(",", ""))


def hot_path(workdir: Path) -> int:
    counts = []
    for requests in (2000, 6000):
        out = workdir / f"hot_path.{requests}"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                        str(ROOT / "bench" / "hot_path.py"), "--requests", str(requests), "--plugins",
                        ",".join(PLUGINS), "--access-log", ACCESS_LOG["access_log"], "--access-log-format",
                        ACCESS_LOG["access_log_format"], "--rate-limiting", RATE_LIMITING["config"]],
                       capture_output=True, check=True, cwd=ROOT, env=ENV)
        counts.append(total(out))
    return (counts[1] - counts[0]) // 4000


# A wrk script whose every request has a head of its own.
VARYING = """
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, {["apikey"] = "%s", ["X-Request-Id"] = tostring(counter)})
end
"""


def wrk(port: int, seconds: int, script: Path | None = None) -> int:
    """Requests wrk completed against the proxy in `seconds` (10 connections)."""
    extra = ["-s", str(script)] if script is not None else []
    out = subprocess.run(["wrk", "-t1", "-c10", f"-d{seconds}s", "-H", f"apikey: {API_KEY}", *extra,
                          f"http://127.0.0.1:{port}/bench"], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"the proxy answered errors:\n{out}")
    found = re.search(r"(\d+) requests in", out)
    if found is None:
        raise SystemExit(f"unexpected wrk output:\n{out}")
    return int(found.group(1))


def real(workdir: Path, seconds: int, varying: bool = False) -> tuple[int, int]:
    """Instructions per call of a real proxy process, and the requests they were counted over."""
    script = None
    if varying:
        script = workdir / "varying.lua"
        script.write_text(VARYING % API_KEY)
        workdir = workdir / "varying"
        workdir.mkdir()
    with NginxServer.upstream(workdir / "nginx", vary_heads=varying) as upstream:
        snapshot = _snapshot(PLUGINS, json.loads(RATE_LIMITING["config"]))
        snapshot["services"][0]["port"] = upstream.port
        port = free_port()
        out = workdir / "real"
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                                 "-c", SERVE, str(port), json.dumps(snapshot), json.dumps(ACCESS_LOG),
                                 json.dumps(PLUGINS)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=ENV)
        try:
            wait_for_port(port, timeout=120)
            wrk(port, 3, script)  # warm-up: connections, caches, the first spool pages
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True, check=True)
            requests = wrk(port, seconds, script)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
            time.sleep(1)
            dumps = sorted(workdir.glob("real.*"))
            if not dumps:
                raise SystemExit("callgrind wrote no dump")
            return total(dumps[-1]) // requests, requests
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20, help="wrk's measured run against the real process")
    parser.add_argument("--skip-real", action="store_true", help="only count bench/hot_path.py")
    parser.add_argument("--plugins", default=",".join(PLUGINS),
                        help="plugins of both counts (comma separated; e.g. key-auth,acl,billable)")
    parser.add_argument("--varying-heads", action="store_true",
                        help="also count a real process whose requests and responses never repeat a head")
    parser.add_argument("--access-log", default="off",
                        help="the proxy's access_log: off, or a file (relative: in the run's temporary prefix)")
    parser.add_argument("--access-log-format", default="text", choices=("text", "json"))
    parser.add_argument("--keep", metavar="DIR",
                        help="work in DIR (made if missing) and leave callgrind's files there, for callgrind_annotate")
    parser.add_argument("--rate-limiting", default="{}",
                        help="rate-limiting's config fields (JSON) over bench/hot_path.py's limits, "
                             "e.g. '{\"hide_client_headers\": true}'")
    args = parser.parse_args()
    PLUGINS[:] = [name for name in args.plugins.split(",") if name]
    RATE_LIMITING["config"] = args.rate_limiting
    ACCESS_LOG.update(access_log=args.access_log, access_log_format=args.access_log_format)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        result: dict[str, object] = {"commit": commit, "plugins": "+".join(PLUGINS), **ACCESS_LOG,
                                     "hot_path": hot_path(workdir)}
        if not args.skip_real:
            result["real"], result["real_requests"] = real(workdir, args.seconds)
            if args.varying_heads:
                result["real_varying"], result["real_varying_requests"] = real(workdir, args.seconds, varying=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
