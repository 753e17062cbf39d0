"""The Lua of the worker-side transitions: each moves one job atomically, or not at all.

Every script guards on the job's current state, so two parties racing to move one job (a
callback and the reconciler, a duplicate callback, a redelivered message) cannot both win.
Counting a job's end and freeing a callback-mode job's in-flight slot are composed from the
modules that own those keys (`jobs.counters`, `limits.inflight`), never written again here.
"""

from __future__ import annotations

from faceswap_jobs.jobs.counters import BATCH_COUNTING_LUA
from faceswap_jobs.jobs.spend import SPEND_COUNTING_LUA
from faceswap_jobs.limits.inflight import RELEASE_SLOT_LUA

_REDIS_NOW = """
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

END_ATTEMPT = (
    BATCH_COUNTING_LUA
    + SPEND_COUNTING_LUA
    + RELEASE_SLOT_LUA
    + _REDIS_NOW
    + """
-- KEYS: [1] job hash, [2] history list, [3] awaiting-callback sorted set, [4] stats hash,
--       [5] dead-letter sorted set, [6] parked sorted set, [7] paused sorted set
-- ARGV: [1] states it may leave, comma-separated ('*' = any unfinished state), [2] new state,
--       [3] outcome of the call that ends ('' when no call ends: a cancel), [4] now (host
--       time, for the record), [5] fields to set (JSON object), [6] the ended attempt as JSON
--       ('' = patch the last attempt with outcome, ended_at and error instead: a callback does
--       not know it), [7] the attempt's error (JSON or ''), [8] 1 when the call spends retry
--       budget, [9] ttl (ms) when the new state is an end, else 0, [10] API task id to record
--       if none is yet (or ''), [11] in-flight key prefix, [12] longest wake-up list,
--       [13] batch key prefix, [14] park for this many seconds (-1: do not park),
--       [15] a callback's submission nonce ('' = not a callback), [16] the callback's task id,
--       [17] the call's billing, [18] why it repeats ('' = it does not), [19] its UTC day,
--       [20] the day's number, [21] how long day buckets are kept (s), [22] the token that
--       made the call ('' = the job's own, as callback mode records it)
-- KEYS (spend): [8] the day's spend hash, [9] the spend days index, [10] billed calls ever
-- Ends the job's running (or accepted) call and moves the job, freeing the in-flight slot a
-- callback-mode call held, counting ends in stats and batch, dead-lettering a failure, parking
-- or pausing a job that waits. A callback ends only the call it was issued for: the last
-- attempt must carry its nonce and, once the API's task id is recorded, that task id; any other
-- callback (a replay, an earlier submission's, a forgery) is counted in stats and changes
-- nothing. Returns {1} when it moved the job, else {0, state, why}.
local state = redis.call('HGET', KEYS[1], 'state')
local callback = ARGV[15] ~= ''
local function refuse(why)
  if callback then redis.call('HINCRBY', KEYS[4], 'callbacks:refused:' .. why, 1) end
  return {0, state or '', why}
end
if not state then return refuse('unknown_job') end
if state == 'succeeded' or state == 'failed' or state == 'cancelled' then
  return refuse('finished')
end
if ARGV[1] ~= '*' and not string.find(',' .. ARGV[1] .. ',', ',' .. state .. ',', 1, true) then
  return refuse('not_waiting')
end
if callback then
  local last = redis.call('LINDEX', KEYS[2], -1)
  local call = last and cjson.decode(last)
  if not call or call.submission ~= ARGV[15]
      or (call.outcome ~= 'in_progress' and call.outcome ~= 'accepted') then
    return refuse('stale_submission')
  end
  local recorded = call.api_task_id
  if type(recorded) == 'string' and recorded ~= ARGV[16] then
    return refuse('task_mismatch')
  end
  redis.call('HINCRBY', KEYS[4], 'callbacks:applied', 1)
end
local now = tonumber(ARGV[4])
if ARGV[3] ~= '' then
  local last = redis.call('LINDEX', KEYS[2], -1)
  if last then
    local attempt = cjson.decode(last)
    if attempt.outcome == 'in_progress' or attempt.outcome == 'accepted' then
      if attempt.outcome == 'in_progress' and ARGV[8] == '1' then
        redis.call('HINCRBY', KEYS[1], 'attempts', 1)
      end
      if ARGV[6] ~= '' then
        redis.call('LSET', KEYS[2], -1, ARGV[6])
      else
        attempt.outcome = ARGV[3]
        attempt.ended_at = now
        if ARGV[7] ~= '' then attempt.error = cjson.decode(ARGV[7]) end
        redis.call('LSET', KEYS[2], -1, cjson.encode(attempt))
      end
    end
  end
  redis.call('HINCRBY', KEYS[4], 'calls:' .. ARGV[3], 1)
end
for name, value in pairs(cjson.decode(ARGV[5])) do redis.call('HSET', KEYS[1], name, value) end
if ARGV[10] ~= '' then redis.call('HSETNX', KEYS[1], 'api_task_id', ARGV[10]) end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'updated_at', ARGV[4])
local held = redis.call('HMGET', KEYS[1], 'inflight_lease', 'token_id', 'id', 'batch')
if held[1] and held[2] then
  release_inflight_slot(ARGV[11] .. held[2], held[1], tonumber(ARGV[12]))
  redis.call('HDEL', KEYS[1], 'inflight_lease')
end
if ARGV[3] ~= '' then
  local token = ARGV[22] ~= '' and ARGV[22] or held[2] or 'unknown'
  count_spend(KEYS[1], KEYS[10], KEYS[8], KEYS[9], held[4] and (ARGV[13] .. held[4]), token,
              ARGV[3], ARGV[17], ARGV[18], ARGV[19], tonumber(ARGV[20]), tonumber(ARGV[21]))
end
local id = held[3]
redis.call('ZREM', KEYS[3], id)
if ARGV[2] == 'paused' then
  redis.call('HSETNX', KEYS[1], 'paused_at', ARGV[4])
  redis.call('ZADD', KEYS[7], 'NX', redis_now(), id)
end
if tonumber(ARGV[14]) >= 0 then
  redis.call('ZADD', KEYS[6], redis_now() + tonumber(ARGV[14]), id)
end
if tonumber(ARGV[9]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[9])
  redis.call('PEXPIRE', KEYS[2], ARGV[9])
  redis.call('HINCRBY', KEYS[4], 'jobs:' .. ARGV[2], 1)
  if held[4] then count_batch_end(ARGV[13] .. held[4], ARGV[2]) end
end
if ARGV[2] == 'failed' then
  -- the dead-letter queue keeps a job as long as its record: older entries are trimmed, and
  -- the set itself expires once no job failed for that long
  redis.call('ZADD', KEYS[5], now, id)
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[9]) / 1000)
  redis.call('PEXPIRE', KEYS[5], ARGV[9])
end
return {1}
"""
)

WAIT = (
    _REDIS_NOW
    + """
-- KEYS: [1] job hash, [2] parked sorted set, [3] paused sorted set
-- ARGV: [1] job id, [2] new state: queued, retry_wait or paused, [3] now (host time),
--       [4] what the job waits for, [5] park for this many seconds (-1: do not park)
-- Moves a job that is between calls; a job that ended stays ended. Returns 1 when moved.
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'succeeded' or state == 'failed' or state == 'cancelled' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'updated_at', ARGV[3], 'wait_reason', ARGV[4])
if ARGV[2] == 'paused' then
  redis.call('HSETNX', KEYS[1], 'paused_at', ARGV[3])
  redis.call('ZADD', KEYS[3], 'NX', redis_now(), ARGV[1])
end
if tonumber(ARGV[5]) >= 0 then
  redis.call('ZADD', KEYS[2], redis_now() + tonumber(ARGV[5]), ARGV[1])
end
return 1
"""
)

ACCEPT = """
-- KEYS: [1] job hash, [2] history list, [3] awaiting-callback sorted set
-- ARGV: [1] api task id, [2] how long to wait for the callback (s), [3] in-flight lease,
--       [4] token id, [5] the attempt (JSON, outcome `accepted`), [6] now (host time, for
--       the record; the give-up time is on Redis time like the reconciler's clock)
-- Records a submission the API accepted, unless a callback already settled the job.
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
local t = redis.call('TIME')
local give_up = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'waiting_callback', 'api_task_id', ARGV[1],
  'inflight_lease', ARGV[3], 'token_id', ARGV[4], 'updated_at', ARGV[6], 'wait_reason', 'callback')
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('LSET', KEYS[2], -1, ARGV[5])
redis.call('ZADD', KEYS[3], give_up, redis.call('HGET', KEYS[1], 'id'))
return 1
"""

UNPAUSE = """
-- KEYS: [1] job hash
-- ARGV: [1] now (unix s)
-- Adds the time since `paused_at` to `paused_s` and clears `paused_at`; returns paused_s.
local at = tonumber(redis.call('HGET', KEYS[1], 'paused_at'))
if not at then return redis.call('HGET', KEYS[1], 'paused_s') or '0' end
redis.call('HDEL', KEYS[1], 'paused_at')
return redis.call('HINCRBYFLOAT', KEYS[1], 'paused_s', math.max(0, tonumber(ARGV[1]) - at))
"""

START_ATTEMPT = """
-- KEYS: [1] job hash, [2] history list
-- ARGV: [1] attempt number, [2] attempt as JSON, [3] started at, [4] history ttl (ms)
-- Counts the call before it is made. Sent twice (a retry after a lost reply), it counts once:
-- the job's `calls` already reached this attempt's number.
if tonumber(redis.call('HGET', KEYS[1], 'calls') or '0') >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'state', 'running', 'updated_at', ARGV[3], 'wait_reason', '',
           'calls', ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"""

RENEW_LEASE = """
-- KEYS: [1] lease key
-- ARGV: [1] holder token, [2] ttl (ms)
-- Extends the lease if we hold it, takes it again if it lapsed (Redis was away longer than its
-- time to live); returns 0 only when someone else holds it.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""

RELEASE_LEASE = """
-- KEYS: [1] lease key
-- ARGV: [1] holder token
-- Deletes the lease only if we still hold it, so a late finisher cannot free someone else's.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
