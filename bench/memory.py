"""Memory of benchmark processes: peaks sampled in a background thread, and this process's own.

Separate from :mod:`bench.common` because only the figures that report memory need psutil's sampling.
"""

from __future__ import annotations

import os
import threading
from typing import Optional


class _Sampler:
    """Calls ``_update(with_pss)`` every ``interval`` seconds in a background thread while the ``with``
    block runs, and once at either end; PSS only every 5th time (smaps_rollup is the slow read)."""

    def __init__(self, interval: float):
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _update(self, with_pss: bool) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        tick = 0
        while not self._stop.is_set():
            self._update(with_pss=tick % 5 == 0)
            tick += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._update(with_pss=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._update(with_pss=True)


class PeakRSS(_Sampler):
    """Peak memory of a process and all its children, sampled in a background thread.

    Two sums: RSS (what ``top`` shows; pages shared between forked workers count once per process) and
    PSS (shared pages split between the processes sharing them: the tree's real footprint)."""

    def __init__(self, pid: Optional[int] = None, interval: float = 0.05):
        super().__init__(interval)
        self.pid = pid or os.getpid()
        self.peak = 0
        self.peak_pss = 0

    def _sample(self, with_pss: bool) -> tuple[int, int]:
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            return 0, 0
        rss = pss = 0
        for p in procs:
            try:
                # PSS reads /proc/<pid>/smaps_rollup (~1.3 ms a process): sampled 5x less often than RSS
                info = p.memory_full_info() if with_pss else p.memory_info()
            except (psutil.Error, OSError):
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss) if with_pss else 0
        return rss, pss

    def _update(self, with_pss: bool = True) -> None:
        rss, pss = self._sample(with_pss)
        self.peak = max(self.peak, rss)
        if with_pss:
            self.peak_pss = max(self.peak_pss, pss)

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20

    @property
    def peak_pss_mb(self) -> float:
        return self.peak_pss / 2**20


class PeakPerProcess(_Sampler):
    """Peak RSS (every sample) and PSS (every 5th: smaps_rollup is slower) of each of a fixed set of
    processes, sampled in a background thread: the memory of each Dask worker on its own, where
    :class:`PeakRSS` sums a process tree. A process that has exited keeps the peak it reached."""

    def __init__(self, pids, interval: float = 0.05):
        super().__init__(interval)
        self.pids = [int(p) for p in pids]
        self.peak_rss = {p: 0 for p in self.pids}
        self.peak_pss = {p: 0 for p in self.pids}

    def _update(self, with_pss: bool) -> None:
        import psutil

        for pid in self.pids:
            try:
                proc = psutil.Process(pid)
                info = proc.memory_full_info() if with_pss else proc.memory_info()
            except (psutil.Error, OSError):
                continue
            self.peak_rss[pid] = max(self.peak_rss[pid], info.rss)
            if with_pss:
                self.peak_pss[pid] = max(self.peak_pss[pid], getattr(info, "pss", info.rss))

    def mb(self, pid: int) -> dict:
        return {"peak_rss_mb": self.peak_rss[int(pid)] / 2**20, "peak_pss_mb": self.peak_pss[int(pid)] / 2**20}


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def max_rss_mb() -> float:
    """This process's peak resident memory since it started (``getrusage``: kernel-counted, not sampled), MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
