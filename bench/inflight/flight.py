"""Calls in flight and completions per second: pure functions, no I/O, no clock.

A call is in flight from the moment the provider received it until the provider is done with
it: for a synchronous call that is the ledger entry's `[time, time + duration_s]`; for a
callback-mode call it is from the `accepted` entry until the provider delivered the callback
(the vendor is still working on the swap while our worker thread is already free). Times are
epoch seconds, as the emulator's ledger and callback log record them.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ACCEPTED = "accepted"


@dataclass(frozen=True)
class Interval:
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Window:
    """Half-open `[start_s, end_s)` in epoch seconds."""

    start_s: float
    end_s: float

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s


def call_intervals(
    ledger: Iterable[Mapping[str, Any]],
    deliveries: Iterable[Mapping[str, Any]],
    *,
    until_s: float,
) -> list[Interval]:
    """Every call as the provider saw it; a call still open at `until_s` ends there.

    An `accepted` (callback-mode) call ends at the first delivery of its task's callback, so
    the vendor-side time counts, not the few milliseconds of the HTTP exchange.
    """
    delivered: dict[str, float] = {}
    for d in deliveries:
        if not d.get("lost") and d.get("status") is not None:
            task = str(d["task_id"])
            delivered[task] = min(delivered.get(task, math.inf), float(d["time"]))
    intervals = []
    for entry in ledger:
        start = float(entry["time"])
        if entry["outcome"] == ACCEPTED:
            end = delivered.get(str(entry.get("task_id")), until_s)
        elif entry.get("duration_s") is None:
            end = until_s
        else:
            end = start + float(entry["duration_s"])
        intervals.append(Interval(start, min(end, until_s)))
    return intervals


def peak_in_flight(intervals: Sequence[Interval]) -> int:
    """Most intervals open at one instant (an interval ending when another starts: not both)."""
    events = sorted(
        [(i.start_s, 1) for i in intervals] + [(i.end_s, -1) for i in intervals],
        key=lambda e: (e[0], e[1]),
    )
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def in_flight_series(intervals: Sequence[Interval], t0_s: float, seconds: int) -> list[int]:
    """Intervals open at `t0_s + s` for each whole second s in `range(seconds)`."""
    starts = sorted(i.start_s for i in intervals)
    ends = sorted(i.end_s for i in intervals)
    return [bisect_right(starts, t0_s + s) - bisect_right(ends, t0_s + s) for s in range(seconds)]


def steady_window(
    t0_s: float, latency_s: float, last_start_s: float, run_end_s: float
) -> Window | None:
    """Where completions come at the full rate: after the first latency (ramp-up), before the
    drain tail (the last call's start + latency), never past the end of the run.

    At least one latency long, it is cut to a whole number of latencies, so a contender whose
    calls complete in waves (prefork with 2 processes: 2 completions every 60 s) is judged on
    whole waves, not on where a window edge happens to fall. None when nothing is left.
    """
    start = t0_s + latency_s
    end = min(last_start_s + latency_s, run_end_s)
    if end <= start:
        return None
    length = end - start
    if length >= latency_s:
        length = math.floor(length / latency_s) * latency_s
    return Window(start, start + length)


def completions_per_s(finish_times_s: Iterable[float], window: Window | None) -> float | None:
    """Jobs that finished inside the window, per second of it."""
    if window is None or window.length_s <= 0:
        return None
    done = sum(window.start_s <= t < window.end_s for t in finish_times_s)
    return done / window.length_s


def per_second_counts(times_s: Iterable[float], t0_s: float, seconds: int) -> list[int]:
    """How many of `times_s` fall in each whole second `[t0 + s, t0 + s + 1)`."""
    counts = [0] * seconds
    for t in times_s:
        s = math.floor(t - t0_s)
        if 0 <= s < seconds:
            counts[s] += 1
    return counts


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by the nearest-rank method; None without values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]
