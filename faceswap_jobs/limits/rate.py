"""Global adaptive rate limiter: GCRA with reservations for pacing, a 429 controller for the rate.

Trade-off: GCRA keeps a single timestamp per token (the theoretical arrival time), so a check is
O(1) and exact to the microsecond, and a caller learns *when* its slot is instead of polling.
A caller that may wait reserves the slot and sleeps until it; one that would wait too long
reserves nothing and parks its job. Every reservation carries the token's generation: a rate
cut or a pause bumps it, so slots handed out before are re-validated (`gate.py`) and dropped.

The rate follows what the provider's 429s say, not each 429 alone (`ON_OUTCOME`): the share
of 429s among recent answers, against a noise floor learned from the provider. A share well
above the floor cuts the rate to the limit it reveals (rate * (1 - excess share)), less a
headroom that grows with the excess up to `headroom` at a tenth;
if the share does not fall after the cut, the 429s did not depend on our rate: they are noise,
the rate is restored and the floor raised to that share. Successes climb the rate back:
doubling per second while far below the last limit (a storm is over), additively near it.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from faceswap_jobs.limits.lua import REDIS_NOW_LUA, WINDOW_MARGIN_LUA

MAX_WINDOW_MARGIN_S = 0.5
STRICT_MARGIN_S = 0.05
"""The strict mode's margin unless one is set: pacing at rate / 1.05 keeps 0.95 of the rate."""

ACQUIRE = (
    REDIS_NOW_LUA
    + WINDOW_MARGIN_LUA
    + """
-- KEYS: [1] token rate hash, [2] bulk rate hash
-- ARGV: [1] ceiling rate (calls/s), [2] burst (calls), [3] longest acceptable wait (s),
--       [4] share of the rate bulk work may use (0..1], [5] 1 when the caller is bulk work,
--       [6] key ttl (ms), [7] the window margin's base (s): slots are spaced
--       (1 + margin) / rate apart
-- Returns {granted (0/1), wait_s, effective rate, paused_until - now, slot time, generation}.
local now = redis_now()
local ceiling = tonumber(ARGV[1])
local burst = math.max(1, tonumber(ARGV[2]))
local max_wait = tonumber(ARGV[3])
local bulk_share = tonumber(ARGV[4])
local is_bulk = ARGV[5] == '1'
local ttl = tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[1], 'tat', 'rate', 'paused_until', 'gen', 'mg', 'mg_t')
local rate = math.min(tonumber(h[2]) or ceiling, ceiling)
local paused_until = tonumber(h[3]) or 0
local gen = h[4] or '0'
local start = math.max(now, paused_until)
local interval = (1 + window_margin(h[5], h[6], tonumber(ARGV[7]), now)) / rate
local tat = math.max(tonumber(h[1]) or 0, start)
local at = math.max(start, tat - (burst - 1) * interval)
local bulk_interval, bulk_tat
if is_bulk and bulk_share < 1 then
  bulk_interval = interval / bulk_share
  bulk_tat = math.max(tonumber(redis.call('HGET', KEYS[2], 'tat')) or 0, start)
  local bulk_burst = math.max(1, math.floor(burst * bulk_share))
  at = math.max(at, bulk_tat - (bulk_burst - 1) * bulk_interval)
end
local wait = at - now
if wait > max_wait then
  return {'0', tostring(wait), tostring(rate), tostring(paused_until - now), tostring(at), gen}
end
redis.call('HSET', KEYS[1], 'tat', tostring(math.max(tat, at) + interval))
redis.call('PEXPIRE', KEYS[1], ttl)
if bulk_interval then
  redis.call('HSET', KEYS[2], 'tat', tostring(math.max(bulk_tat, at) + bulk_interval))
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {'1', tostring(wait), tostring(rate), tostring(paused_until - now), tostring(at), gen}
"""
)

ON_OUTCOME = (
    REDIS_NOW_LUA
    + WINDOW_MARGIN_LUA
    + """
-- KEYS: [1] token rate hash
-- ARGV: [1] outcome: ok (a success), through (another answer: not rate limited), limited,
--       [2] Retry-After (s, or -1 when absent), [3] ceiling, [4] floor, [5] headroom,
--       [6] additive increase (calls/s per s), [7] probe slow-down, [8] key ttl (ms),
--       [9] pause cap (s), [10] base pause (s), then the controller's constants:
--       [11] decay of the counts (s), [12] decay of the noise floor (s), [13] fewest answers
--       to judge, [14] fewest 429s to cut, [15] highest share that can be noise,
--       [16] share that means an outage (pause everyone), [17] slack over the floor,
--       [18] standard errors over the floor, [19] 1 in strict mode, [20] the window margin's
--       base (s), [21] its most (s): a 429 in strict mode, or a rare one (under 1% of recent
--       answers) in any mode, means our calls bunched beyond the provider's window (senders'
--       jitter): the window's margin grows by half, plus 10 ms; the rate does not climb while
--       it is wider than its base
-- Returns {what happened (steady, cut, noise, limit), rate, pause_s}.
local now = redis_now()
local f = redis.call('HMGET', KEYS[1], 'rate', 'gen', 'ok', 'rl', 't', 'nf', 'limited_at',
  'probe_from', 'probe_excess', 'cut_at', 'paused_until')
local ceiling, floor = tonumber(ARGV[3]), tonumber(ARGV[4])
local rate = math.min(tonumber(f[1]) or ceiling, ceiling)
local gen = tonumber(f[2]) or 0
local last = tonumber(f[5]) or now
local decay = math.exp(-math.max(0, now - last) / tonumber(ARGV[11]))
local ok = (tonumber(f[3]) or 0) * decay
local rl = (tonumber(f[4]) or 0) * decay
local nf = (tonumber(f[6]) or 0) * math.exp(-math.max(0, now - last) / tonumber(ARGV[12]))
local limited_at = tonumber(f[7])
local probe_from, probe_excess = tonumber(f[8]), tonumber(f[9])
local cut_at = tonumber(f[10]) or 0
local paused_until = tonumber(f[11]) or 0
local limited = ARGV[1] == 'limited'
if limited and (ARGV[19] == '1' or rl < 0.01 * (ok + rl)) then
  local m = redis.call('HMGET', KEYS[1], 'mg', 'mg_t')
  local grown = window_margin(m[1], m[2], tonumber(ARGV[20]), now) * 1.5 + 0.01
  redis.call('HSET', KEYS[1], 'mg', tostring(math.min(tonumber(ARGV[21]), grown)), 'mg_t',
    tostring(now))
end
if limited then rl = rl + 1 else ok = ok + 1 end
local n = ok + rl
local share = rl / n
local what, pause = 'steady', 0
local min_n = tonumber(ARGV[13]) - 0.5
if probe_from and (n >= min_n or (now - cut_at >= 5 and n >= 3)) then
  if share - nf >= 0.5 * probe_excess and share <= tonumber(ARGV[15]) then
    what, nf, rate = 'noise', share, probe_from
    gen = gen + 1
  else
    what = 'limit'
  end
  probe_from, probe_excess, ok, rl = nil, nil, 0, 0
elseif not probe_from and rl >= tonumber(ARGV[14]) - 0.5 and n >= min_n then
  local se = math.sqrt(math.max(nf, 0.01) * (1 - nf) / n)
  if share > nf + math.max(tonumber(ARGV[17]), tonumber(ARGV[18]) * se) then
    local excess = math.min(1, (share - nf) / (1 - nf))
    probe_from, probe_excess = rate, share - nf
    if share >= tonumber(ARGV[16]) then
      limited_at = rate
      local retry_after = tonumber(ARGV[2])
      if retry_after < 0 then retry_after = tonumber(ARGV[10]) end
      pause = math.min(retry_after, tonumber(ARGV[9]))
      paused_until = math.max(paused_until, now + pause)
    else
      limited_at = math.max(floor, rate * (1 - excess))
    end
    local headroom = 1 - (1 - tonumber(ARGV[5])) * math.min(1, excess / 0.1)
    rate = math.max(floor, rate * (1 - excess) * headroom)
    what, ok, rl, cut_at, gen = 'cut', 0, 0, now, gen + 1
  end
end
local widened = redis.call('HMGET', KEYS[1], 'mg', 'mg_t')
local margin = window_margin(widened[1], widened[2], tonumber(ARGV[20]), now)
local settling = margin > tonumber(ARGV[20]) + 0.005
if what == 'steady' and ARGV[1] == 'ok' and not probe_from and not settling
    and rate < ceiling then
  local step
  if limited_at and rate < 0.9 * limited_at then
    step = 1
  else
    step = tonumber(ARGV[6]) / rate
    if limited_at and rate >= 0.9 * limited_at then step = step * tonumber(ARGV[7]) end
  end
  rate = math.min(ceiling, rate + step)
end
local fields = {'rate', tostring(rate), 'gen', gen, 'ok', tostring(ok), 'rl', tostring(rl),
  't', tostring(now), 'nf', tostring(nf), 'cut_at', tostring(cut_at),
  'paused_until', tostring(paused_until)}
local function set(name, value)
  table.insert(fields, name)
  table.insert(fields, tostring(value))
end
if limited_at then set('limited_at', limited_at) end
if what == 'cut' then
  set('probe_from', probe_from)
  set('probe_excess', probe_excess)
  set('tat', math.max(now, paused_until))
end
if what == 'noise' or what == 'limit' then
  redis.call('HDEL', KEYS[1], 'probe_from', 'probe_excess')
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[8]))
return {what, tostring(rate), tostring(pause)}
"""
)


READ = (
    REDIS_NOW_LUA
    + WINDOW_MARGIN_LUA
    + """
-- KEYS: [1] token rate hash
-- ARGV: [1] ceiling rate, [2] the window margin's base (s)
-- Returns {rate, window margin (s), paused for (s)}: what the limiter holds now.
local now = redis_now()
local h = redis.call('HMGET', KEYS[1], 'rate', 'mg', 'mg_t', 'paused_until')
local rate = math.min(tonumber(h[1]) or tonumber(ARGV[1]), tonumber(ARGV[1]))
local margin = window_margin(h[2], h[3], tonumber(ARGV[2]), now)
return {tostring(rate), tostring(margin), tostring((tonumber(h[4]) or 0) - now)}
"""
)


@dataclass(frozen=True)
class RateConfig:
    ceiling_per_s: float
    burst: int = 1
    """Calls allowed back to back above the rate; 0 is the strict mode: no window of
    `1 + window_margin_s` seconds holds more than the rate's calls."""
    floor_per_s: float = 0.5
    headroom: float = 0.95
    """A cut sets the rate to this fraction of the limit the 429s reveal (when they reveal an
    excess of a tenth or more; a smaller excess keeps proportionally more)."""
    increase_per_s: float = 0.5
    probe_slowdown: float = 0.1
    """How much slower the rate climbs near the rate that last drew 429s."""
    pause_base_s: float = 1.0
    pause_cap_s: float = 300.0
    bulk_share: float = 0.8
    """Fraction of the rate (and of the burst) bulk work may use; the rest stays free for
    interactive jobs, so a bulk backlog can never take every slot."""
    window_margin_s: float | None = None
    """How much longer than a second the held window is, for the time between our check and the
    provider's clock (thread wake-up, the request on the wire). None: `STRICT_MARGIN_S` in
    strict mode, none otherwise."""
    count_decay_s: float = 10.0
    """Answers older than this weigh 1/e in the 429 share."""
    noise_decay_s: float = 60.0
    """A learned noise floor fades with this time constant, so an old spell of noise does not
    hide a limit that appears later."""
    min_answers: int = 20
    min_limited: int = 3
    noise_cap: float = 0.3
    """A share of 429s above this is never taken for noise: the provider is refusing us."""
    outage_share: float = 0.9
    """A share this high pauses every worker for Retry-After: sending more is pointless."""
    slack: float = 0.005
    z: float = 2.0

    @property
    def strict(self) -> bool:
        return self.burst == 0

    @property
    def base_margin_s(self) -> float:
        """The window's margin when no 429 has widened it."""
        if self.window_margin_s is not None:
            return self.window_margin_s
        return STRICT_MARGIN_S if self.strict else 0.0

    def window_cap(self, rate_per_s: float) -> int:
        """Most calls any window may hold at the current rate: R, plus the calls a burst lets go
        back to back beyond the first (GCRA's burst 1 is no burst at all)."""
        return max(1, int(rate_per_s)) + max(0, self.burst - 1)


@dataclass(frozen=True)
class Grant:
    granted: bool
    wait_s: float
    """With a grant: sleep this long, then call. Without: how long until a slot would be free."""
    rate_per_s: float
    paused_for_s: float
    slot_at: float = 0.0
    """The reserved slot, on Redis time."""
    generation: str = "0"
    """The token's generation the slot belongs to: a cut or a pause makes it stale."""


@dataclass(frozen=True)
class Change:
    what: str
    """`steady`, `cut` (the rate went down), `noise` (a cut undone), or `limit` (a cut kept)."""
    rate_per_s: float
    pause_s: float


KEY_TTL_MS = 24 * 3600 * 1000


class RateLimiter:
    """One token's rate, shared by every worker process on every host."""

    def __init__(self, client: redis.Redis, key: str, bulk_key: str, config: RateConfig):
        self._key, self._bulk_key, self.config = key, bulk_key, config
        self._acquire = client.register_script(ACQUIRE)
        self._outcome = client.register_script(ON_OUTCOME)
        self._read = client.register_script(READ)

    def state(self, config: RateConfig | None = None) -> tuple[float, float, float]:
        """(rate, window margin, seconds still paused): calls go at rate / (1 + margin); under
        `config` when given (what the workers published), else this limiter's own."""
        c = config or self.config
        rate, margin, paused = self._read(keys=[self._key], args=[c.ceiling_per_s, c.base_margin_s])
        return float(rate), float(margin), max(0.0, float(paused))

    def acquire(self, *, max_wait_s: float, bulk: bool = False) -> Grant:
        c = self.config
        granted, wait, rate, paused, slot_at, gen = self._acquire(
            keys=[self._key, self._bulk_key],
            args=[c.ceiling_per_s, max(1, c.burst), max_wait_s, c.bulk_share, int(bulk),
                  KEY_TTL_MS, c.base_margin_s],
        )  # fmt: skip
        return Grant(
            granted == "1",
            max(0.0, float(wait)),
            float(rate),
            max(0.0, float(paused)),
            float(slot_at),
            str(gen),
        )

    def on_outcome(self, outcome: str, retry_after_s: float | None = None) -> Change:
        """Report one answer to our own call: `ok`, `through` (answered, not rate limited) or
        `limited` (a 429)."""
        c = self.config
        what, rate, pause = self._outcome(
            keys=[self._key],
            args=[outcome, -1 if retry_after_s is None else retry_after_s, c.ceiling_per_s,
                  c.floor_per_s, c.headroom, c.increase_per_s, c.probe_slowdown, KEY_TTL_MS,
                  c.pause_cap_s, c.pause_base_s, c.count_decay_s, c.noise_decay_s,
                  c.min_answers, c.min_limited, c.noise_cap, c.outage_share, c.slack, c.z,
                  int(c.strict), c.base_margin_s, MAX_WINDOW_MARGIN_S],
        )  # fmt: skip
        return Change(str(what), float(rate), float(pause))
