"""The files in the prefix through which CLI commands find and steer a running node."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from tollway import __version__
from tollway.config import Settings
from tollway.errors import NodeError


def version() -> str:
    return __version__


def ensure_prefix(settings: Settings) -> None:
    for path in (settings.prefix_path, settings.logs_dir, settings.spool_dir):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NodeError(f"cannot create {path}: {exc.strerror}") from exc


def node_id(settings: Settings) -> str:
    """This node's id, made once and kept in PREFIX/node_id: it keys the node's spool offsets."""
    ensure_prefix(settings)
    path = settings.prefix_path / "node_id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = str(uuid.uuid4())
        tmp = path.with_suffix(".tmp")
        tmp.write_text(value + "\n")
        os.replace(tmp, path)
        return value


def read_pid(settings: Settings) -> int | None:
    """The pid of the running master, or None (a stale pid file is ignored)."""
    try:
        pid = int(settings.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not a running node
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def write_pid(settings: Settings) -> None:
    running = read_pid(settings)
    if running is not None and running != os.getpid():
        raise NodeError(f"Tollway is already running in {settings.prefix} (pid {running})")
    tmp = settings.pid_file.with_suffix(".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, settings.pid_file)


def remove_pid(settings: Settings) -> None:
    try:
        if int(settings.pid_file.read_text().strip()) == os.getpid():
            settings.pid_file.unlink()
    except (FileNotFoundError, ValueError):
        pass


def require_running(settings: Settings) -> int:
    pid = read_pid(settings)
    if pid is None:
        raise NodeError(f"Tollway is not running in {settings.prefix}")
    return pid


# -- reload hand-off: the CLI writes the settings it sees, the master answers with a status -----

def _reload_path(settings: Settings) -> Path:
    return settings.prefix_path / "reload.json"


def _status_path(settings: Settings) -> Path:
    return settings.prefix_path / "reload.status.json"


def write_reload_request(settings: Settings) -> str:
    token = uuid.uuid4().hex
    tmp = _reload_path(settings).with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps({"token": token, "settings": settings.to_dict()}))
    os.replace(tmp, _reload_path(settings))
    return token


def read_reload_request(settings: Settings) -> dict[str, Any] | None:
    try:
        return orjson.loads(_reload_path(settings).read_bytes())  # type: ignore[no-any-return]
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None


def write_reload_status(settings: Settings, request: dict[str, Any] | None, ok: bool, message: str) -> None:
    token = request.get("token") if request else None
    tmp = _status_path(settings).with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps({"token": token, "ok": ok, "message": message}))
    os.replace(tmp, _status_path(settings))


def wait_reload_status(settings: Settings, token: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = orjson.loads(_status_path(settings).read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            status = None
        if status and status.get("token") == token:
            return status  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise NodeError(f"the node did not confirm the reload within {timeout:.0f}s; see its log")
