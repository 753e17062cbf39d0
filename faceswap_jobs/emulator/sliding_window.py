"""Per-token rate limit: a strict sliding window on the wall clock.

"At most R calls in any 1-second window", exactly: a call at time t is admitted only if fewer
than R admitted calls lie in (t - 1 s, t]. Unlike the token bucket it never lets a client run
ahead on saved-up capacity (there is no burst: 2R calls can never land within one second), so
it is the stricter twin of a provider that counts calls per rolling second. The price is
memory: it keeps the admission times of the last R calls of every key, where the bucket keeps
two numbers. Like the bucket it runs on real time, not on the scaled simulated time.
"""

import math
import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 1.0
"""Length of the sliding window."""


def calls_per_window(rate_per_s: float) -> int:
    """R: calls admitted per window, the configured rate rounded down, at least 1."""
    return max(1, math.floor(rate_per_s * WINDOW_S))


class SlidingWindowLimiter:
    """Admission times by key (a token hash); the rate is passed per call so it can change live.

    Refused calls are not recorded, so a client hammering a full window does not push its own
    next admission back. Only the last R admissions of a key are kept: when the rate is raised
    live, calls admitted before the change beyond the old R are no longer counted.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._admitted: dict[str, deque[float]] = {}

    def acquire(self, key: str, rate_per_s: float) -> float:
        """Admit one call: 0.0 when admitted, else seconds until the window has room for it."""
        now_s = self._clock()
        limit = calls_per_window(rate_per_s)
        admitted = self._admitted.setdefault(key, deque())
        while admitted and now_s - admitted[0] >= WINDOW_S:
            admitted.popleft()
        if len(admitted) >= limit:
            # The window has room again when the R-th latest admission leaves it (the oldest
            # one, unless the rate was lowered live).
            return WINDOW_S - (now_s - admitted[-limit])
        admitted.append(now_s)
        while len(admitted) > limit:
            admitted.popleft()
        return 0.0

    def clear(self) -> None:
        """Forget every key's admissions (what `POST /_emulator/reset` does)."""
        self._admitted.clear()
