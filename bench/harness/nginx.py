"""One nginx instance in its own temp prefix: the `return 200` upstream, or a keep-alive proxy to it.

Each instance has its own directory (config, pid, error log, temp paths), one worker process, no
access log, and listens on a loopback port. It runs in the foreground (`daemon off`) as our child,
so stopping it is a signal to a pid we started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psutil

from .tools import LOOPBACK, free_port, require_tool, wait_for_port

_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def render_config(directory: Path, port: int, upstream_port: int | None = None,
                  keepalive: int = 64, vary_heads: bool = False) -> str:
    """nginx.conf for `return 200`, or, with upstream_port, for `proxy_pass` with a keepalive pool.

    With `vary_heads`, the upstream's every response head differs (an X-Request-Id header).
    """
    temp_paths = "\n".join(f"    {name}_temp_path {directory / name};" for name in _TEMP_PATHS)
    if upstream_port is None:
        upstream_block = ""
        location = '            return 200 "ok\\n";'
        if vary_heads:
            location = "            add_header X-Request-Id $request_id;\n" + location
    else:
        upstream_block = (f"    upstream backend {{\n        server {LOOPBACK}:{upstream_port};\n"
                          f"        keepalive {keepalive};\n    }}\n")
        location = ("            proxy_pass http://backend;\n"
                    "            proxy_http_version 1.1;\n"
                    '            proxy_set_header Connection "";')
    return f"""worker_processes 1;
daemon off;
master_process on;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
{temp_paths}
{upstream_block}    server {{
        listen {LOOPBACK}:{port} backlog=4096;
        location / {{
{location}
        }}
    }}
}}
"""


class NginxServer:
    """nginx as a child process: `NginxServer.upstream()` or `NginxServer.proxy(upstream_port)`."""

    def __init__(self, directory: Path | None = None, upstream_port: int | None = None,
                 port: int | None = None, vary_heads: bool = False) -> None:
        self.binary = require_tool("nginx")
        self.vary_heads = vary_heads
        self.directory = Path(directory or tempfile.mkdtemp(prefix="tollway-bench-nginx-"))
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def upstream(cls, directory: Path | None = None, vary_heads: bool = False) -> NginxServer:
        """The fast upstream: every request answers 200 `ok` (with a head of its own: `vary_heads`)."""
        return cls(directory, vary_heads=vary_heads)

    @classmethod
    def proxy(cls, upstream_port: int, directory: Path | None = None) -> NginxServer:
        """The reference proxy: `proxy_pass` to the upstream over a keepalive pool."""
        return cls(directory, upstream_port=upstream_port)

    @property
    def kind(self) -> str:
        return "upstream" if self.upstream_port is None else "proxy"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 10.0) -> NginxServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Workers run as `nobody` when we are root: they must be able to enter the directory.
        os.chmod(self.directory, 0o755)
        conf = self.directory / "nginx.conf"
        conf.write_text(render_config(self.directory, self.port, self.upstream_port, vary_heads=self.vary_heads))
        log = open(self.directory / "stderr.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.directory), "-e", str(self.directory / "error.log"),
             "-c", str(conf)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        try:
            wait_for_port(self.port, timeout)
            self._wait_for_worker(timeout)
        except TimeoutError as exc:
            self.stop()
            raise RuntimeError(f"nginx ({self.kind}) did not start: {exc}: {self.error_log()[-2000:]}") from None
        return self

    def _wait_for_worker(self, timeout: float) -> None:
        # The master listens before it forks the worker; RSS sampling wants both.
        deadline = time.monotonic() + timeout
        while "worker 1" not in self.processes():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no worker process after {timeout}s")
            time.sleep(0.01)

    def error_log(self) -> str:
        parts = []
        for name in ("stderr.log", "error.log"):
            try:
                parts.append((self.directory / name).read_text(errors="replace"))
            except FileNotFoundError:
                pass
        return "".join(parts)

    def processes(self) -> dict[str, int]:
        """Role -> pid for RSS sampling: the master and its worker."""
        if self.proc is None or self.proc.poll() is not None:
            return {}
        roles = {"master": self.proc.pid}
        try:
            for number, child in enumerate(psutil.Process(self.proc.pid).children(), 1):
                roles[f"worker {number}"] = child.pid
        except psutil.NoSuchProcess:
            pass
        return roles

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful quit (SIGQUIT), then SIGKILL if nginx is still there after timeout."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.proc = None

    def __enter__(self) -> NginxServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
