"""The per-token rate limit as configured: one strategy at a time, chosen by `rate_window`.

`bucket` is the token bucket (`ratelimit.py`), `sliding` the strict sliding window
(`sliding_window.py`). The choice is read on every call, so `PUT /_emulator/config` takes
effect on the next one; a change of strategy forgets every key's state, so the new strategy
starts from empty instead of judging calls by history the other one kept.
"""

import time
from collections.abc import Callable

from .ratelimit import TokenBucketLimiter
from .sliding_window import SlidingWindowLimiter


class PerTokenLimiter:
    """Both strategies behind one `acquire`; only the one in use holds state."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._bucket = TokenBucketLimiter(clock)
        self._sliding = SlidingWindowLimiter(clock)
        self._in_use: str | None = None

    def acquire(self, key: str, rate_window: str, rate_per_s: float, burst: float) -> float:
        """One call under `rate_window`: 0.0 when admitted, else seconds to wait.

        `burst` is used by the bucket only.
        """
        if rate_window != self._in_use:
            self.clear()
            self._in_use = rate_window
        if rate_window == "sliding":
            return self._sliding.acquire(key, rate_per_s)
        return self._bucket.acquire(key, rate_per_s, burst)

    def clear(self) -> None:
        """Forget every key's state in both strategies (what `POST /_emulator/reset` does)."""
        self._bucket.clear()
        self._sliding.clear()
