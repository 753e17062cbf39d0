"""Global in-flight cap: a distributed semaphore whose slots are leases.

Trade-off: a sorted set scored by lease expiry (Redis time) instead of a counter, so a slot held
by a killed worker comes back by itself when its lease lapses, and a live call renews its lease
so it is never counted twice. Waiters block on a wake-up list that every release pushes to,
instead of polling.
"""

from __future__ import annotations

import threading
import time
import uuid

import redis

ACQUIRE = """
-- KEYS: [1] lease sorted set (member = lease id, score = expiry on Redis time)
-- ARGV: [1] cap, [2] lease id, [3] lease ttl (s)
-- Returns {granted (0/1), seconds until the earliest lease expires (when not granted)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 2000))
  return {'1', '0'}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {'0', tostring(tonumber(first[2]) - now)}
"""

RENEW = """
-- KEYS: [1] lease sorted set
-- ARGV: [1] lease ttl (s), then lease ids
-- Pushes the expiry of the given leases that still exist; returns how many were renewed.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local renewed = 0
for i = 2, #ARGV do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[i])
end
if renewed > 0 then redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) * 2000)) end
return renewed
"""

RELEASE_SLOT_LUA = """
local function release_inflight_slot(slots_key, lease, wake_max)
  if redis.call('ZREM', slots_key, lease) == 0 then return 0 end
  local wake = slots_key .. ':wake'
  redis.call('LPUSH', wake, '1')
  redis.call('LTRIM', wake, 0, wake_max - 1)
  redis.call('PEXPIRE', wake, 60000)
  return 1
end
"""
"""Lua function `release_inflight_slot(slots key, lease id, longest wake-up list)`: frees the slot
and wakes one waiter. The scripts that settle a callback-mode job compose it, so a slot is
freed the same way whoever frees it (the wake-up list is `Keys.inflight_wake`)."""

RELEASE = (
    RELEASE_SLOT_LUA
    + """
-- KEYS: [1] lease sorted set
-- ARGV: [1] lease id, [2] longest wake-up list
return release_inflight_slot(KEYS[1], ARGV[1], tonumber(ARGV[2]))
"""
)

WAKE_LIST_MAX = 64
BLOCK_MAX_S = 1.0
"""Longest single block on the wake-up list; keeps below the Redis client's socket timeout."""


class InflightSemaphore:
    """At most `cap` calls in flight for one token, across every worker."""

    def __init__(self, client: redis.Redis, key: str, wake_key: str, cap: int, lease_ttl_s: float):
        self._r = client
        self._key, self._wake_key = key, wake_key
        self.cap, self.lease_ttl_s = cap, lease_ttl_s
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self._held: set[str] = set()
        self._held_lock = threading.Lock()

    def try_acquire(self) -> tuple[str | None, float]:
        """(lease id, 0) when granted, else (None, seconds until a lease expires at the latest)."""
        lease = uuid.uuid4().hex
        granted, wait = self._acquire(keys=[self._key], args=[self.cap, lease, self.lease_ttl_s])
        if granted == "1":
            with self._held_lock:
                self._held.add(lease)
            return lease, 0.0
        return None, max(0.0, float(wait))

    def acquire(self, timeout_s: float) -> str | None:
        """Block until a slot is free (woken by releases), or None after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            lease, expiry_s = self.try_acquire()
            if lease is not None:
                return lease
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                return None
            self._r.blpop([self._wake_key], timeout=max(0.05, min(BLOCK_MAX_S, expiry_s, left_s)))

    def release(self, lease: str) -> None:
        with self._held_lock:
            self._held.discard(lease)
        self._release(keys=[self._key], args=[lease, WAKE_LIST_MAX])

    def hold(self, lease: str, ttl_s: float) -> None:
        """Keep a slot for `ttl_s` without this process renewing it (a call that awaits its
        callback: the receiver or the reconciler releases it, or it lapses)."""
        with self._held_lock:
            self._held.discard(lease)
        self._renew(keys=[self._key], args=[ttl_s, lease])

    def renew_held(self) -> int:
        """Renew every lease this process holds; a call longer than one lease keeps its slot."""
        with self._held_lock:
            leases = list(self._held)
        if not leases:
            return 0
        return int(self._renew(keys=[self._key], args=[self.lease_ttl_s, *leases]))

    def in_flight(self) -> int:
        """Leases not yet expired, on Redis time."""
        seconds, micros = self._r.time()
        return int(self._r.zcount(self._key, seconds + micros / 1e6, "+inf"))
