"""Circuit breaker per API token: auth and balance failures stop the token's calls, not its jobs.

Trade-off: the breaker lives in Redis (one hash, Lua transitions, Redis time) so one 401 seen by
any worker stops every worker at once, at the cost of one round trip per call. Open → after the
cool-down exactly one probe call is let through (half-open) → its success closes the breaker,
an auth failure reopens it with a doubled cool-down. An operator pause never probes.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

CHECK = """
-- KEYS: [1] breaker hash
-- ARGV: [1] caller id (becomes the probe holder), [2] probe lease (s)
-- Returns {verdict, seconds until a probe may go, reason}; verdict is closed, probe or open.
-- The reason of a tripped breaker leads with the API's error code, which every paused job shows.
local b = redis.call('HMGET', KEYS[1],
  'state', 'probe_at', 'probe_until', 'reason', 'manual', 'code')
if not b[1] then return {'closed', '0', ''} end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if b[5] == '1' then return {'open', '-1', b[4]} end
if b[6] and b[6] ~= '' then b[4] = b[6] .. ': ' .. (b[4] or '') end
local probe_at = tonumber(b[2]) or now
local probe_until = tonumber(b[3]) or 0
if now >= probe_at and now >= probe_until then
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_holder', ARGV[1],
    'probe_until', tostring(now + tonumber(ARGV[2])))
  return {'probe', '0', b[4]}
end
return {'open', tostring(math.max(probe_at, probe_until) - now), b[4]}
"""

OPEN = """
-- KEYS: [1] breaker hash
-- ARGV: [1] reason, [2] code, [3] first cool-down (s), [4] longest cool-down (s), [5] ttl (ms)
-- Opens (or reopens) the breaker; a reopening doubles the cool-down. Returns the cool-down.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'cooldown', 'manual', 'state', 'opened_at')
if b[2] == '1' then return tostring(-1) end
local cooldown = tonumber(ARGV[3])
if b[3] == 'half_open' and b[1] then
  cooldown = math.min(tonumber(ARGV[4]), tonumber(b[1]) * 2)
elseif b[3] == 'open' and b[1] then
  return tostring(b[1])
end
redis.call('HSET', KEYS[1], 'state', 'open', 'reason', ARGV[1], 'code', ARGV[2],
  'opened_at', b[4] or tostring(now), 'cooldown', tostring(cooldown),
  'probe_at', tostring(now + cooldown), 'probe_until', '0')
redis.call('HDEL', KEYS[1], 'probe_holder')
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return tostring(cooldown)
"""

CLOSE = """
-- KEYS: [1] breaker hash
-- ARGV: none
-- Closes a non-manual breaker after a successful call; returns 1 when it was not closed before.
local b = redis.call('HMGET', KEYS[1], 'state', 'manual')
if not b[1] or b[2] == '1' then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

ABANDON_PROBE = """
-- KEYS: [1] breaker hash
-- ARGV: [1] caller id
-- A probe that will not be made after all (no slot free) hands the turn to the next caller.
if redis.call('HGET', KEYS[1], 'probe_holder') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'open', 'probe_until', '0')
redis.call('HDEL', KEYS[1], 'probe_holder')
return 1
"""

BREAKER_TTL_MS = 30 * 86400 * 1000
"""An open breaker is kept for a month at most: long enough for any operator to notice."""


@dataclass(frozen=True)
class Verdict:
    state: str
    """`closed` (call), `probe` (call; you are the one probe), or `open` (do not call)."""
    retry_in_s: float
    """For `open`: seconds until a probe may go; -1 when an operator paused the token."""
    reason: str


class CircuitBreaker:
    def __init__(self, client: redis.Redis, key: str, *, cooldown_s: float, max_cooldown_s: float):
        self._r, self._key = client, key
        self.cooldown_s, self.max_cooldown_s = cooldown_s, max_cooldown_s
        self._check = client.register_script(CHECK)
        self._open = client.register_script(OPEN)
        self._close = client.register_script(CLOSE)
        self._abandon = client.register_script(ABANDON_PROBE)

    def check(self, caller: str, probe_lease_s: float) -> Verdict:
        state, retry_in, reason = self._check(keys=[self._key], args=[caller, probe_lease_s])
        return Verdict(state, float(retry_in), reason)

    def abandon_probe(self, caller: str) -> bool:
        return bool(self._abandon(keys=[self._key], args=[caller]))

    def trip(self, reason: str, code: str | None) -> float:
        """Open after an auth or balance failure; returns the cool-down before the probe."""
        args = [reason, code or "", self.cooldown_s, self.max_cooldown_s, BREAKER_TTL_MS]
        return float(self._open(keys=[self._key], args=args))

    def close(self) -> bool:
        """After a successful call; True when this closed an open breaker."""
        return bool(self._close(keys=[self._key], args=[]))

    def pause(self, reason: str) -> None:
        """Operator pause: no probe, no automatic close; only `resume` ends it."""
        self._r.hset(
            self._key, mapping={"state": "open", "manual": "1", "reason": reason, "code": "paused"}
        )
        self._r.pexpire(self._key, BREAKER_TTL_MS)

    def resume(self) -> bool:
        return bool(self._r.delete(self._key))

    def state(self) -> dict[str, str]:
        return dict(self._r.hgetall(self._key))
