"""Memory and CPU of our processes, read from the OS with psutil.

A process is measured with everything it started (a prefork worker's children, a receiver's
nothing), so "the worker" means its whole process tree. RSS is summed over the tree: pages a
prefork parent shares with its children are counted once per process, as `ps` and most
dashboards count them. CPU is user + system time; the last value seen of each process is kept,
so a child that exits before the end still counts up to its last sample.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import psutil

MB = 1024 * 1024


class Usage:
    """RSS and CPU seconds of named process trees (`{"worker": pid, "receiver": pid}`)."""

    def __init__(self, roots: Mapping[str, int]) -> None:
        self._roots = {name: psutil.Process(pid) for name, pid in roots.items()}
        self._cpu_s: dict[str, dict[int, float]] = {name: {} for name in self._roots}
        self._baseline_s: dict[str, float] = dict.fromkeys(self._roots, 0.0)
        self._lock = threading.Lock()
        self.peak_rss_mb: dict[str, float] = dict.fromkeys(self._roots, 0.0)
        self.peak_total_rss_mb = 0.0
        self.peak_threads: dict[str, int] = dict.fromkeys(self._roots, 0)

    def mark(self) -> None:
        """Start counting CPU from now."""
        self.sample()
        with self._lock:
            self._baseline_s = {name: sum(cpu.values()) for name, cpu in self._cpu_s.items()}

    def sample(self) -> dict[str, float]:
        """RSS in MB per tree (and `total`); updates CPU and the peaks."""
        rss: dict[str, float] = {}
        with self._lock:
            for name, root in self._roots.items():
                rss[name] = self._tree_rss_mb(name, root)
            total = sum(rss.values())
            for name, value in rss.items():
                self.peak_rss_mb[name] = max(self.peak_rss_mb[name], value)
            self.peak_total_rss_mb = max(self.peak_total_rss_mb, total)
        return {**rss, "total": total}

    def cpu_s(self) -> float:
        """CPU seconds (user + system) of every tree since `mark()`."""
        return sum(self.cpu_s_by_tree().values())

    def cpu_s_by_tree(self) -> dict[str, float]:
        """CPU seconds (user + system) of each tree since `mark()`."""
        with self._lock:
            return {
                name: sum(cpu.values()) - self._baseline_s[name]
                for name, cpu in self._cpu_s.items()
            }

    def _tree_rss_mb(self, name: str, root: psutil.Process) -> float:
        total = threads = 0
        try:
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0.0
        for process in members:
            try:
                with process.oneshot():
                    total += process.memory_info().rss
                    threads += process.num_threads()
                    times = process.cpu_times()
                self._cpu_s[name][process.pid] = times.user + times.system
            except psutil.Error:
                continue  # exited between the listing and the read
        self.peak_threads[name] = max(self.peak_threads[name], threads)
        return total / MB


def pid_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of one process, e.g. redis-server; 0 when it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def machine_busy_s() -> float:
    """CPU seconds every core of the machine has spent busy (not idle, not waiting on I/O)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def own_cpu_s() -> float:
    """CPU seconds (user + system) of this process: the bench itself."""
    times = psutil.Process().cpu_times()
    return times.user + times.system
