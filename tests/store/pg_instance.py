"""A PostgreSQL server of a test's own (initdb + pg_ctl on a free port), to stop and start at will."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import free_port


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class PgInstance:
    """`initdb` in a directory of its own as the postgres user (PostgreSQL refuses to run as root),
    then start and stop with pg_ctl. Trust auth on 127.0.0.1:`port`. (Not under pytest's tmp_path:
    the postgres user cannot enter root's 0700 directories.)"""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="tollway-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.log = self.directory / "postgres.log"

    @staticmethod
    def available() -> bool:
        return _bin("initdb") is not None and _bin("pg_ctl") is not None and (
            os.geteuid() != 0 or shutil.which("runuser") is not None)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120)

    def init(self) -> PgInstance:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(str(_bin("initdb")), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        return self

    def start(self, wait: bool = True) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(_bin("pg_ctl")), "-D", str(self.data), "-l", str(self.log), "-o", options,
                  *(["-w"] if wait else ["-W"]), "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(_bin("pg_ctl")), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)
