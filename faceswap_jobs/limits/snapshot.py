"""One read of a token's limits for everyone outside `limits/`: the CLI, metrics, the scheduler.

Readers get typed values read on Redis time, never the hash fields, so the limiter's storage can
change without breaking them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import redis

from faceswap_jobs.keys import Keys
from faceswap_jobs.limits.rate import RateConfig, RateLimiter


@dataclass(frozen=True)
class BreakerSnapshot:
    state: str
    """`closed`, `open` or `half_open`."""
    code: str = ""
    reason: str = ""
    manual: bool = False
    """An operator paused the token: no probe, only `resume` closes it."""
    probe_in_s: float = 0.0
    """Seconds until the cool-down lets a probe call through (0 when it may go now)."""

    @property
    def closed(self) -> bool:
        return self.state == "closed"


@dataclass(frozen=True)
class LimitsSnapshot:
    token_id: str
    rate_per_s: float
    """The rate the 429s left: the ceiling, or less after the provider's 429s."""
    window_margin_s: float
    """How much longer than a second the held window is (strict mode, or widened by 429s)."""
    ceiling_per_s: float
    burst: int
    paused_for_s: float
    """How long every worker still waits after a 429 (0 when not paused)."""
    in_flight: int
    max_in_flight: int
    breaker: BreakerSnapshot
    published: bool = True
    """The ceiling, burst and in-flight cap are what the workers published (False: no worker
    did in the last minute, and these are the reader's own settings)."""
    weight: float = 1.0
    retired: bool = False
    """An operator took the token out of service (`faceswap-jobs tokens retire`)."""

    @property
    def pacing_per_s(self) -> float:
        """What the calls actually go at: the rate, spread over the widened window."""
        return self.rate_per_s / (1.0 + self.window_margin_s)


CONFIG_TTL_MS = 60_000
"""A published configuration outlives its last worker by a minute, then readers fall back."""


def publish_config(
    client: redis.Redis,
    keys: Keys,
    token_id: str,
    config: RateConfig,
    max_in_flight: int,
    weight: float = 1.0,
) -> None:
    """What this worker enforces for the token, for every reader (called every few seconds)."""
    key = keys.limits_config(token_id)
    pipe = client.pipeline(transaction=False)
    pipe.hset(key, mapping={"ceiling": config.ceiling_per_s, "burst": config.burst,
                            "max_in_flight": max_in_flight, "weight": weight})  # fmt: skip
    pipe.pexpire(key, CONFIG_TTL_MS)
    pipe.execute()


def read_snapshot(
    client: redis.Redis, keys: Keys, token_id: str, rate: RateLimiter, max_in_flight: int
) -> LimitsSnapshot:
    """The limits as the workers hold them: their published ceiling, burst and cap when one
    published lately, whatever the reader's own settings say."""
    published = client.hgetall(keys.limits_config(token_id))
    config = rate.config
    if published:
        config = replace(config, ceiling_per_s=float(published["ceiling"]),
                         burst=int(published["burst"]))  # fmt: skip
        max_in_flight = int(published["max_in_flight"])
    effective, margin, paused_s = rate.state(config)
    seconds, micros = client.time()
    now = seconds + micros / 1e6
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.breaker(token_id))
    pipe.zcount(keys.inflight(token_id), now, "+inf")
    pipe.sismember(keys.tokens_retired(), token_id)
    breaker, in_flight, retired = pipe.execute()
    return LimitsSnapshot(
        token_id=token_id,
        rate_per_s=effective,
        window_margin_s=margin,
        ceiling_per_s=config.ceiling_per_s,
        burst=config.burst,
        paused_for_s=paused_s,
        in_flight=int(in_flight),
        max_in_flight=max_in_flight,
        breaker=_breaker(breaker, now),
        published=bool(published),
        weight=float(published.get("weight", 1.0)),
        retired=bool(retired),
    )


def _breaker(raw: dict[str, str], now: float) -> BreakerSnapshot:
    if not raw:
        return BreakerSnapshot("closed")
    probe_at = max(float(raw.get("probe_at") or now), float(raw.get("probe_until") or 0))
    return BreakerSnapshot(
        state=raw.get("state", "open"),
        code=raw.get("code", ""),
        reason=raw.get("reason", ""),
        manual=raw.get("manual") == "1",
        probe_in_s=max(0.0, probe_at - now),
    )
