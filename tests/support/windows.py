"""Counting calls the way a strict provider does: in any sliding 1-second window."""

from __future__ import annotations


def max_calls_in_any_window(times: list[float], window_s: float = 1.0) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best
