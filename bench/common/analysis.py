"""Figures from the emulator's ledger: pure functions over calls, no I/O, no clock.

The ledger is the provider's view. It counts every call that reached it, including the ones a
client gave up on, so the same arithmetic judges our limiter and Celery's `rate_limit` alike.
Times are epoch seconds; per-second series are binned from the contender's first submit.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SUCCESS = "success"
RATE_LIMITED = "rate_limited"
"""The emulator's own per-token limiter said 429 (not an injected fault)."""


@dataclass(frozen=True)
class Call:
    time_s: float
    outcome: str


@dataclass(frozen=True)
class CallStats:
    calls: int
    successes: int
    rate_limited: int
    other: int
    """Calls that neither succeeded nor were rate limited (should be 0 in this bench)."""
    busy_s: float
    """First call to last call."""
    success_rate_per_s: float
    """Successes over the busy period."""
    max_calls_1s: int
    """Most calls (any outcome) in any sliding 1-second window."""

    @property
    def rate_limited_share(self) -> float:
        return share(self.rate_limited, self.calls)


@dataclass(frozen=True)
class PerSecond:
    """Counts per whole second since the first submit; index s covers [s, s + 1)."""

    calls: list[int]
    successes: list[int]
    rate_limited: list[int]

    def to_json(self) -> dict[str, list[int]]:
        return {"calls": self.calls, "successes": self.successes, "rate_limited": self.rate_limited}


def calls_from_ledger(entries: Iterable[Mapping[str, Any]]) -> list[Call]:
    """Ledger entries as calls, oldest first."""
    return sorted((Call(float(e["time"]), str(e["outcome"])) for e in entries), key=_time)


def share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def max_in_window(times_s: Sequence[float], window_s: float = 1.0) -> int:
    """Most events in any half-open window [t, t + window_s); `times_s` sorted ascending.

    A window starting at an event is enough: sliding a window right until its left edge meets
    an event never loses one.
    """
    return max(
        (bisect_left(times_s, t + window_s, lo=i) - i for i, t in enumerate(times_s)), default=0
    )


def call_stats(calls: Sequence[Call]) -> CallStats:
    times = [c.time_s for c in calls]
    successes = sum(c.outcome == SUCCESS for c in calls)
    limited = sum(c.outcome == RATE_LIMITED for c in calls)
    busy_s = times[-1] - times[0] if len(times) > 1 else 0.0
    return CallStats(
        calls=len(calls),
        successes=successes,
        rate_limited=limited,
        other=len(calls) - successes - limited,
        busy_s=busy_s,
        success_rate_per_s=successes / busy_s if busy_s > 0 else 0.0,
        max_calls_1s=max_in_window(times),
    )


def per_second(calls: Sequence[Call], t0_s: float) -> PerSecond:
    length = math.floor(calls[-1].time_s - t0_s) + 1 if calls else 0
    series = PerSecond([0] * length, [0] * length, [0] * length)
    for call in calls:
        s = max(0, math.floor(call.time_s - t0_s))
        series.calls[s] += 1
        series.successes[s] += call.outcome == SUCCESS
        series.rate_limited[s] += call.outcome == RATE_LIMITED
    return series


def rate_limited_share_after(calls: Sequence[Call], t_s: float) -> float | None:
    """429 share of the calls made at or after `t_s` (epoch seconds); None when there were none."""
    later = [c for c in calls if c.time_s >= t_s]
    return share(sum(c.outcome == RATE_LIMITED for c in later), len(later)) if later else None


def window_verdicts(
    series: PerSecond,
    *,
    limit_per_s: float,
    window_s: int = 5,
    max_429_share: float = 0.03,
    min_success_fraction: float = 0.9,
) -> list[bool]:
    """For each window [s, s + window_s) among the whole seconds before the last call: did it
    have at most `max_429_share` of its calls answered 429 and at least
    `min_success_fraction * limit_per_s` successes per second?

    The partial last second is left out: the queue is running dry there.
    """
    need = min_success_fraction * limit_per_s * window_s
    verdicts = []
    for s in range(len(series.calls) - window_s):
        calls = sum(series.calls[s : s + window_s])
        limited = sum(series.rate_limited[s : s + window_s])
        successes = sum(series.successes[s : s + window_s])
        verdicts.append(share(limited, calls) <= max_429_share and successes >= need)
    return verdicts


def convergence_s(verdicts: Sequence[bool]) -> int | None:
    """When the limiter has found the provider's real rate, in whole seconds since the first submit.

    The first second T such that every window starting at T or later is good (`window_verdicts`).
    None when even the last window is bad, or the run is shorter than one window.
    """
    if not verdicts or not verdicts[-1]:
        return None
    bad = [s for s, ok in enumerate(verdicts) if not ok]
    return bad[-1] + 1 if bad else 0


RATE_BAND = 0.15
"""How close to the provider's rate the limiter's effective rate must stay to have converged."""


def rate_convergence_s(samples: Sequence[tuple[float, float]], target_per_s: float) -> int | None:
    """When the limiter found the provider's rate: the first whole second after which every
    sample of its effective rate (s since the first submit, calls/s) stays within
    `RATE_BAND` of `target_per_s`. None when the last sample is still outside the band."""
    low, high = target_per_s * (1 - RATE_BAND), target_per_s * (1 + RATE_BAND)
    if not samples or not low <= samples[-1][1] <= high:
        return None
    outside = [t for t, rate in samples if not low <= rate <= high]
    return int(outside[-1]) + 1 if outside else 0


def success_rate_after(calls: Sequence[Call], t_s: float) -> float | None:
    """Successes per second from `t_s` (epoch seconds) to the last call; None without calls."""
    later = [c for c in calls if c.time_s >= t_s]
    if len(later) < 2:
        return None
    return sum(c.outcome == SUCCESS for c in later) / (later[-1].time_s - t_s)


def _time(call: Call) -> float:
    return call.time_s
