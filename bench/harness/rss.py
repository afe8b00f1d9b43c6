"""Peak resident set size per process, sampled in a background thread while a load runs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

import psutil

ProcessMap = Callable[[], dict[str, int]]


class RssSampler:
    """Samples the RSS of a target's processes (role -> pid) every `interval` seconds.

    The process map is asked at every sample, so a worker that appears late (nginx forks its
    worker after the port is open) or that the master restarted is measured under its role.
    `peaks` maps role -> peak RSS in bytes.
    """

    def __init__(self, processes: ProcessMap, interval: float = 0.2) -> None:
        self.processes = processes
        self.interval = interval
        self.peaks: dict[str, int] = {}
        self._handles: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def sample(self) -> None:
        """Take one sample now (also called once at start and once at stop)."""
        handles = {}
        for role, pid in self.processes().items():
            try:
                process = self._handles.get(pid) or psutil.Process(pid)
                rss = process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            handles[pid] = process
            if rss > self.peaks.get(role, 0):
                self.peaks[role] = rss
        self._handles = handles

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> RssSampler:
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
