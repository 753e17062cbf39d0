"""Per-token rate limit: a token bucket on the wall clock.

A token bucket (rather than a fixed window) lets a client that respects Retry-After get in on
its next try, and its burst size is explicit. It runs on real time, not on the scaled simulated
time, because the clients it polices run on real time too. `--rate-window sliding` swaps it for
the stricter `SlidingWindowLimiter` (no burst above the rate in any second).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated_s: float


class TokenBucketLimiter:
    """Buckets by key (a token hash); rate and burst are passed per call so they can change live."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str, rate_per_s: float, burst: float) -> float:
        """Take one call's token: 0.0 when admitted, else seconds until a token is available."""
        now_s = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=burst, updated_s=now_s)
        elapsed_s = max(0.0, now_s - bucket.updated_s)
        bucket.tokens = min(burst, bucket.tokens + elapsed_s * rate_per_s)
        bucket.updated_s = now_s
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate_per_s

    def clear(self) -> None:
        """Forget every bucket (what `POST /_emulator/reset` does)."""
        self._buckets.clear()
