"""Global adaptive rate limiter: GCRA with reservations, in one Lua script, on Redis time.

Trade-off: GCRA keeps a single timestamp per token (the theoretical arrival time), so a check is
O(1) and exact to the microsecond, and a caller learns *when* its slot is instead of polling.
A caller that may wait reserves the slot and sleeps until it; one that would wait too long
reserves nothing and parks its job. The rate adapts to the provider: a 429 pauses every worker
of the token and multiplies the rate down; each success adds back a little (AIMD), slowly near
the rate that last drew a 429, so the rate settles just under the provider's real limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

ACQUIRE = """
-- KEYS: [1] token rate hash, [2] bulk rate hash
-- ARGV: [1] ceiling rate (calls/s), [2] burst (calls), [3] longest acceptable wait (s),
--       [4] share of the rate bulk work may use (0..1], [5] 1 when the caller is bulk work,
--       [6] key ttl (ms)
-- Returns {granted (0/1), wait_s, effective rate, paused_until - now} as strings.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ceiling = tonumber(ARGV[1])
local burst = math.max(1, tonumber(ARGV[2]))
local max_wait = tonumber(ARGV[3])
local bulk_share = tonumber(ARGV[4])
local is_bulk = ARGV[5] == '1'
local ttl = tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[1], 'tat', 'rate', 'paused_until')
local rate = math.min(tonumber(h[2]) or ceiling, ceiling)
local paused_until = tonumber(h[3]) or 0
local start = math.max(now, paused_until)
local interval = 1 / rate
local tat = math.max(tonumber(h[1]) or 0, start)
local at = math.max(start, tat - (burst - 1) * interval)
local bulk_interval, bulk_tat
if is_bulk and bulk_share < 1 then
  bulk_interval = 1 / (rate * bulk_share)
  bulk_tat = math.max(tonumber(redis.call('HGET', KEYS[2], 'tat')) or 0, start)
  local bulk_burst = math.max(1, math.floor(burst * bulk_share))
  at = math.max(at, bulk_tat - (bulk_burst - 1) * bulk_interval)
end
local wait = at - now
if wait > max_wait then
  return {'0', tostring(wait), tostring(rate), tostring(paused_until - now)}
end
redis.call('HSET', KEYS[1], 'tat', tostring(math.max(tat, at) + interval))
redis.call('PEXPIRE', KEYS[1], ttl)
if bulk_interval then
  redis.call('HSET', KEYS[2], 'tat', tostring(math.max(bulk_tat, at) + bulk_interval))
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {'1', tostring(wait), tostring(rate), tostring(paused_until - now)}
"""

ON_RATE_LIMITED = """
-- KEYS: [1] token rate hash
-- ARGV: [1] Retry-After (s, or -1 when absent), [2] pause cap (s), [3] base pause (s),
--       [4] ceiling rate, [5] floor rate, [6] decrease factor, [7] key ttl (ms),
--       [8] quick-relapse window (s)
-- Pauses the token for every worker and lowers its rate at most once per pause; a 429 soon
-- after the previous pause ended means the rate is still far too high: it is cut twice over.
-- Returns {pause_s, new rate} as strings.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local retry_after = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 'rate', 'paused_until', 'strikes')
local rate = math.min(tonumber(h[1]) or tonumber(ARGV[4]), tonumber(ARGV[4]))
local paused_until = tonumber(h[2]) or 0
local strikes = (tonumber(h[3]) or 0) + 1
local pause
if retry_after >= 0 then
  pause = math.min(retry_after, cap)
else
  pause = math.min(cap, tonumber(ARGV[3]) * 2 ^ (strikes - 1))
end
if now >= paused_until then
  local factor = tonumber(ARGV[6])
  if paused_until > 0 and now - paused_until < tonumber(ARGV[8]) then
    factor = factor * factor
  end
  redis.call('HSET', KEYS[1], 'limited_at_rate', tostring(rate))
  rate = math.max(tonumber(ARGV[5]), rate * factor)
end
paused_until = math.max(paused_until, now + pause)
redis.call('HSET', KEYS[1], 'rate', tostring(rate), 'paused_until', tostring(paused_until),
  'strikes', strikes, 'tat', tostring(paused_until))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[7]))
return {tostring(paused_until - now), tostring(rate)}
"""

PAUSED_FOR = """
-- KEYS: [1] token rate hash
-- ARGV: none
-- Returns how long the token stays paused (s, <= 0 when it is not), on Redis time.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return tostring((tonumber(redis.call('HGET', KEYS[1], 'paused_until')) or 0) - now)
"""

ON_SUCCESS = """
-- KEYS: [1] token rate hash
-- ARGV: [1] ceiling rate, [2] additive increase (calls/s gained per second of success),
--       [3] key ttl (ms), [4] probe slow-down (0..1]
-- Raises the rate by increase/rate per success, i.e. by `increase` per second at full speed;
-- within 10% of (or above) the rate that last drew a 429 it climbs `probe slow-down` times as
-- fast, so the rate dwells near the provider's limit instead of sawing through it.
local h = redis.call('HMGET', KEYS[1], 'rate', 'strikes', 'limited_at_rate')
local ceiling = tonumber(ARGV[1])
local rate = tonumber(h[1])
if rate == nil then return tostring(ceiling) end
if rate >= ceiling and (h[2] == false or h[2] == '0') then return tostring(ceiling) end
local step = tonumber(ARGV[2]) / rate
local limited_at = tonumber(h[3])
if limited_at and rate >= 0.9 * limited_at then step = step * tonumber(ARGV[4]) end
rate = math.min(ceiling, rate + step)
redis.call('HSET', KEYS[1], 'rate', tostring(rate), 'strikes', 0)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return tostring(rate)
"""


@dataclass(frozen=True)
class RateConfig:
    ceiling_per_s: float
    burst: int = 1
    floor_per_s: float = 0.5
    decrease_factor: float = 0.8
    increase_per_s: float = 0.5
    probe_slowdown: float = 0.1
    """How much slower the rate climbs near the rate that last drew a 429."""
    relapse_s: float = 5.0
    """A 429 within this long after the previous pause ended cuts the rate twice over."""
    pause_base_s: float = 1.0
    pause_cap_s: float = 300.0
    bulk_share: float = 0.8
    """Fraction of the rate (and of the burst) bulk work may use; the rest stays free for
    interactive jobs, so a bulk backlog can never take every slot."""


@dataclass(frozen=True)
class Grant:
    granted: bool
    wait_s: float
    """With a grant: sleep this long, then call. Without: how long until a slot would be free."""
    rate_per_s: float
    paused_for_s: float


KEY_TTL_MS = 24 * 3600 * 1000


class RateLimiter:
    """One token's rate, shared by every worker process on every host."""

    def __init__(self, client: redis.Redis, key: str, bulk_key: str, config: RateConfig):
        self._key, self._bulk_key, self.config = key, bulk_key, config
        self._acquire = client.register_script(ACQUIRE)
        self._limited = client.register_script(ON_RATE_LIMITED)
        self._success = client.register_script(ON_SUCCESS)
        self._paused_for = client.register_script(PAUSED_FOR)

    def acquire(self, *, max_wait_s: float, bulk: bool = False) -> Grant:
        c = self.config
        granted, wait, rate, paused = self._acquire(
            keys=[self._key, self._bulk_key],
            args=[c.ceiling_per_s, c.burst, max_wait_s, c.bulk_share, int(bulk), KEY_TTL_MS],
        )
        return Grant(granted == "1", max(0.0, float(wait)), float(rate), max(0.0, float(paused)))

    def paused_for_s(self) -> float:
        """How long a pause begun by another worker's 429 still lasts (0 when none)."""
        return max(0.0, float(self._paused_for(keys=[self._key], args=[])))

    def on_rate_limited(self, retry_after_s: float | None) -> tuple[float, float]:
        """Pause the token for everyone; returns (pause_s, new rate)."""
        c = self.config
        pause, rate = self._limited(
            keys=[self._key],
            args=[
                -1 if retry_after_s is None else retry_after_s,
                c.pause_cap_s,
                c.pause_base_s,
                c.ceiling_per_s,
                c.floor_per_s,
                c.decrease_factor,
                KEY_TTL_MS,
                c.relapse_s,
            ],
        )
        return float(pause), float(rate)

    def on_success(self) -> float:
        c = self.config
        return float(
            self._success(
                keys=[self._key],
                args=[c.ceiling_per_s, c.increase_per_s, KEY_TTL_MS, c.probe_slowdown],
            )
        )
