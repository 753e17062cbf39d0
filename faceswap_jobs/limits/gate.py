"""The last check before a call, after any wait: is the slot still good, and is the call allowed?

Trade-off: one more round trip per call, in exchange for slots that stay true. A thread may sleep
up to `threads / rate` seconds for its rate slot; meanwhile the breaker may have opened, the rate
may have been cut or paused, or the thread may have woken late (CPU load) and would call right
next to an on-time neighbour. Checked here, atomically and on Redis time, those slots are dropped
instead of spent. The same script keeps a log of the calls it let go, so that no window (a second
plus a margin for the senders' jitter, which 429s widen) holds more than `cap` of them, whatever
the senders' clocks and wake-ups did.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis

from faceswap_jobs.limits.lua import REDIS_NOW_LUA, WINDOW_MARGIN_LUA

LAST_CHECK = (
    REDIS_NOW_LUA
    + WINDOW_MARGIN_LUA
    + """
-- KEYS: [1] token rate hash, [2] breaker hash, [3] sorted set of calls let go (score: time)
-- ARGV: [1] caller id, [2] generation of the slot, [3] time the call was due, [4] lateness
--       allowed (s), [5] most calls in a window, [6] the margin's base (s): the window is a
--       second plus a margin for the senders' jitter, [7] call id, [8] ttl (ms)
-- Returns {verdict, seconds, reason}: go; breaker (open, or another caller's probe); paused
-- (for seconds); stale (the rate changed since the slot was given); late (woke too late);
-- window (full for seconds). Only `go` records the call.
local now = redis_now()
local b = redis.call('HMGET', KEYS[2], 'state', 'probe_holder', 'reason', 'code', 'manual')
if b[1] and not (b[1] == 'half_open' and b[2] == ARGV[1] and b[5] ~= '1') then
  local reason = b[3] or ''
  if b[5] ~= '1' and b[4] and b[4] ~= '' then reason = b[4] .. ': ' .. reason end
  return {'breaker', '0', reason}
end
local r = redis.call('HMGET', KEYS[1], 'gen', 'paused_until', 'mg', 'mg_t')
local paused = (tonumber(r[2]) or 0) - now
if paused > 0 then return {'paused', tostring(paused), ''} end
if (r[1] or '0') ~= ARGV[2] then return {'stale', '0', ''} end
if now - tonumber(ARGV[3]) > tonumber(ARGV[4]) then
  return {'late', tostring(now - tonumber(ARGV[3])), ''}
end
local window = 1 + window_margin(r[3], r[4], tonumber(ARGV[6]), now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[5]) then
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  return {'window', tostring(tonumber(oldest[2]) + window - now), ''}
end
redis.call('ZADD', KEYS[3], now, ARGV[7])
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[8]))
return {'go', '0', ''}
"""
)

GATE_TTL_MS = 60_000


@dataclass(frozen=True)
class Verdict:
    verdict: str
    """`go`, `breaker`, `paused`, `stale`, `late` or `window`."""
    seconds: float
    """How long it stays so: the pause, or until the window has room; how late for `late`."""
    reason: str = ""


class Gate:
    def __init__(self, client: redis.Redis, rate_key: str, breaker_key: str, sent_key: str):
        self._keys = [rate_key, breaker_key, sent_key]
        self._check = client.register_script(LAST_CHECK)

    def check(
        self,
        caller: str,
        *,
        generation: str,
        due_at: float,
        late_after_s: float,
        cap: int,
        margin_s: float = 0.0,
    ) -> Verdict:
        verdict, seconds, reason = self._check(
            keys=self._keys,
            args=[caller, generation, due_at, late_after_s, cap, margin_s, uuid.uuid4().hex,
                  GATE_TTL_MS],
        )  # fmt: skip
        return Verdict(str(verdict), max(0.0, float(seconds)), str(reason))
