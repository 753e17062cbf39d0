"""Jobs waiting outside the broker: parked until a time, or paused until the token's breaker closes.

A job enters the parked or paused set in the same atomic step that moves its record
(`JobTransitions.park`, `pause`, `end_attempt`); this module hands the waiting jobs back.

Why not a broker countdown: an ETA message sits unacknowledged in a worker's memory and comes
back after the visibility timeout, so long or numerous waits would either duplicate work or eat
memory. A parked job is one sorted-set member; a scheduler thread sends it again when due, using
claims (visibility-timeout style) so a scheduler that dies mid-send loses nothing.
"""

from __future__ import annotations

import redis

from faceswap_jobs.keys import Keys

CLAIM_DUE = """
-- KEYS: [1] parked sorted set
-- ARGV: [1] most jobs to claim, [2] claim length (s)
-- Returns {job id, claim score, ...}: due jobs, pushed `claim` seconds ahead so no one else
-- claims them while we send them; a crashed claimer's jobs fall due again.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local claimed = {}
local score = tostring(now + tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], score, id)
  table.insert(claimed, id)
  table.insert(claimed, score)
end
return claimed
"""

DONE = """
-- KEYS: [1] parked sorted set
-- ARGV: [1] job id, [2] claim score
-- Removes a sent job unless it was parked again meanwhile (its score changed).
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""

RELEASE_PAUSED = """
-- KEYS: [1] paused sorted set (score = when paused), [2] parked sorted set
-- ARGV: [1] most jobs to release
-- Moves the oldest paused jobs to the parked set, due now; returns how many moved.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[1]))
for i = 1, #popped, 2 do
  redis.call('ZADD', KEYS[2], now, popped[i])
end
return #popped / 2
"""


class ParkingLot:
    def __init__(self, client: redis.Redis, keys: Keys):
        self._r = client
        self._parked, self._paused = keys.parked, keys.paused
        self._claim = client.register_script(CLAIM_DUE)
        self._done = client.register_script(DONE)
        self._release = client.register_script(RELEASE_PAUSED)

    def claim_due(self, limit: int, claim_s: float) -> list[tuple[str, str]]:
        """Due jobs as (job id, claim); pass the claim back to `done` once the job is sent."""
        flat = self._claim(keys=[self._parked], args=[limit, claim_s])
        return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]

    def done(self, job_id: str, claim: str) -> None:
        self._done(keys=[self._parked], args=[job_id, claim])

    def release_paused(self, limit: int) -> int:
        return int(self._release(keys=[self._paused, self._parked], args=[limit]))

    def counts(self) -> tuple[int, int]:
        """(parked, paused)."""
        pipe = self._r.pipeline(transaction=False)
        pipe.zcard(self._parked)
        pipe.zcard(self._paused)
        parked, paused = pipe.execute()
        return int(parked), int(paused)
