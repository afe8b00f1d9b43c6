"""Peak resident set size per process, sampled in a background thread while a load runs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

import psutil

ProcessMap = Callable[[], dict[str, int]]


class RssSampler:
    """Samples the RSS of a target's processes (role -> pid) every `interval` seconds.

    The process map is asked again whenever a process went away, so a worker the master
    restarted keeps being measured under its role. `peaks` maps role -> peak RSS in bytes.
    """

    def __init__(self, processes: ProcessMap, interval: float = 0.2) -> None:
        self.processes = processes
        self.interval = interval
        self.peaks: dict[str, int] = {}
        self._handles: dict[str, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _refresh(self) -> None:
        self._handles = {}
        for role, pid in self.processes().items():
            try:
                self._handles[role] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                pass

    def sample(self) -> None:
        """Take one sample now (also called once at start and once at stop)."""
        gone = False
        for role, process in self._handles.items():
            try:
                rss = process.memory_info().rss
            except psutil.NoSuchProcess:
                gone = True
                continue
            if rss > self.peaks.get(role, 0):
                self.peaks[role] = rss
        if gone:
            self._refresh()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> RssSampler:
        self._refresh()
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        self.sample()
        return dict(self.peaks)

    def __enter__(self) -> RssSampler:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
