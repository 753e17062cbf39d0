"""Call budgets per calendar day (UTC, on Redis time), per queue and per batch.

Every call a worker is about to make is charged, in one Lua script, to each of its scopes (the
day, its queue, its batch): all of them have room and all are counted, or none is and the reply
names the scope that is spent. One script for every worker is what keeps any number of them from
overspending. The charge comes before the call's rate slot and is given back when the call does
not go (no in-flight slot, no rate slot, its deadline passed); a call that starts keeps it,
whatever its answer, so an ambiguous call (maybe billed) counts.

Caps are in calls, set by an operator (`faceswap-jobs budget`); a scope without one is unlimited
but still counted (for a job's lifetime after its last call), so a cap set later knows what was
spent already. `day` caps every
day; `day:YYYY-MM-DD` caps one day and wins over `day`. Jobs refused by a budget wait in a sorted
set per scope; `release` hands them back to the parking lot as the scope gets room (a cap raised
or cleared, a new day), never more than the room it has.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_FLOOR, Decimal

import redis

from faceswap_jobs.config import DEFAULT_JOB_TTL_S
from faceswap_jobs.keys import Keys

UTC_DAY_LUA = """
local function utc_day(seconds)
  -- The civil date of a Unix time (H. Hinnant's civil_from_days): Redis Lua has no os.date.
  local z = math.floor(seconds / 86400) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02d', y, m, d)
end
"""
"""Lua function `utc_day(unix seconds)`: `YYYY-MM-DD` in UTC."""

CAP_LUA = """
local function cap_of(caps_key, scope)
  local cap = redis.call('HGET', caps_key, scope)
  if not cap and string.sub(scope, 1, 4) == 'day:' then
    cap = redis.call('HGET', caps_key, 'day')
  end
  return tonumber(cap)
end
"""
"""Lua function `cap_of(caps hash, scope)`: the scope's cap in calls, nil when unlimited."""

CHARGE = (
    UTC_DAY_LUA
    + CAP_LUA
    + """
-- KEYS: [1] caps hash (scope -> calls)
-- ARGV: [1] share of a cap that warns, [2] prefix of the scopes' spent hashes (fields `calls`,
--       `warned`: the cap whose threshold was announced), [3] their ttl (ms), then the call's
--       scopes besides the day
-- Returns {'ok', day scope, then scope, spent, cap of each scope that crossed its threshold
-- with this call} after counting the call in every scope, or {'spent', scope, spent, cap} for
-- the first scope without room, counting nothing.
local t = redis.call('TIME')
local scopes = {'day:' .. utc_day(tonumber(t[1]))}
for i = 4, #ARGV do scopes[#scopes + 1] = ARGV[i] end
local caps = {}
for i, scope in ipairs(scopes) do
  local cap = cap_of(KEYS[1], scope)
  local spent = tonumber(redis.call('HGET', ARGV[2] .. scope, 'calls')) or 0
  if cap and spent >= cap then return {'spent', scope, tostring(spent), tostring(cap)} end
  caps[i] = cap or -1
end
local reply = {'ok', scopes[1]}
for i, scope in ipairs(scopes) do
  local key = ARGV[2] .. scope
  local spent = redis.call('HINCRBY', key, 'calls', 1)
  redis.call('PEXPIRE', key, tonumber(ARGV[3]))
  local cap = caps[i]
  if cap >= 0 and spent >= tonumber(ARGV[1]) * cap
      and redis.call('HGET', key, 'warned') ~= tostring(cap) then
    redis.call('HSET', key, 'warned', tostring(cap))
    reply[#reply + 1] = scope
    reply[#reply + 1] = tostring(spent)
    reply[#reply + 1] = tostring(cap)
  end
end
return reply
"""
)

REFUND = """
-- ARGV: [1] prefix of the scopes' spent hashes, then the scopes a call was charged to (the
--       call was not made)
for i = 2, #ARGV do
  local key = ARGV[1] .. ARGV[i]
  if (tonumber(redis.call('HGET', key, 'calls')) or 0) > 0 then
    redis.call('HINCRBY', key, 'calls', -1)
  end
end
return #ARGV - 1
"""

RELEASE = (
    UTC_DAY_LUA
    + CAP_LUA
    + """
-- KEYS: [1] caps hash, [2] set of scopes with waiting jobs, [3] parked set
-- ARGV: [1] most jobs to release, [2] prefix of the scopes' waiting sets, [3] prefix of their
--       spent hashes
-- Moves the oldest waiting jobs of each scope with room (a past day has all the room it
-- needs) to the parked set, due now, at most the room; forgets scopes with no job waiting.
-- Returns {scope, released, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local today = 'day:' .. utc_day(tonumber(t[1]))
local left = tonumber(ARGV[1])
local reply = {}
for _, scope in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local waiting = ARGV[2] .. scope
  local room = left
  local cap = cap_of(KEYS[1], scope)
  if cap and not (string.sub(scope, 1, 4) == 'day:' and scope ~= today) then
    local spent = tonumber(redis.call('HGET', ARGV[3] .. scope, 'calls')) or 0
    room = math.max(0, math.min(left, cap - spent))
  end
  if room > 0 then
    local popped = redis.call('ZPOPMIN', waiting, room)
    for i = 1, #popped, 2 do redis.call('ZADD', KEYS[3], now, popped[i]) end
    left = left - #popped / 2
    reply[#reply + 1] = scope
    reply[#reply + 1] = tostring(#popped / 2)
  end
  if redis.call('EXISTS', waiting) == 0 then redis.call('SREM', KEYS[2], scope) end
end
return reply
"""
)

_NAME = r"[A-Za-z0-9_.-]{1,200}"
SCOPE = re.compile(rf"day|day:\d{{4}}-\d{{2}}-\d{{2}}|queue:{_NAME}|batch:{_NAME}")
"""What a scope looks like: `day`, `day:2026-12-07`, `queue:faceswap.bulk`, `batch:NAME`."""


def parse_scope(text: str) -> str:
    """An operator's scope, checked (a day must be a real date); ValueError says what is wrong."""
    scope = text.strip()
    if not SCOPE.fullmatch(scope):
        raise ValueError(
            "a scope is day, day:YYYY-MM-DD, queue:NAME or batch:NAME (names: A-Z a-z 0-9 _ . -)"
        )
    if scope.startswith("day:"):
        try:
            date.fromisoformat(scope.removeprefix("day:"))
        except ValueError:
            raise ValueError(f"{scope} names no calendar day") from None
    return scope


def job_scopes(queue: str, batch: str | None) -> tuple[str, ...]:
    """The scopes a job's calls are charged to besides the day: its queue and its batch."""
    return (f"queue:{queue}",) + ((f"batch:{batch}",) if batch else ())


def calls_for_money(money: Decimal, price_per_call: Decimal) -> int:
    """How many whole calls `money` pays for at `price_per_call`: caps are kept in calls."""
    if price_per_call <= 0:
        raise ValueError("the price per call must be more than 0")
    if money < 0:
        raise ValueError("a budget cannot be negative")
    return int((money / price_per_call).to_integral_value(rounding=ROUND_FLOOR))


def day_scope(when: datetime) -> str:
    return "day:" + when.astimezone(UTC).date().isoformat()


@dataclass(frozen=True)
class Usage:
    """A scope's calls spent against its cap (None: unlimited), and the jobs waiting for it."""

    scope: str
    spent: int
    cap: int | None = None
    waiting: int = 0

    @property
    def share(self) -> float | None:
        if self.cap is None:
            return None
        return self.spent / self.cap if self.cap else 1.0

    @property
    def exhausted(self) -> bool:
        return self.cap is not None and self.spent >= self.cap


@dataclass(frozen=True)
class Charge:
    """A call counted in its scopes (the day's first); `crossed` are the scopes whose soft
    threshold this call crossed (announced once per scope and cap, by whoever crossed it)."""

    scopes: tuple[str, ...]
    crossed: tuple[Usage, ...] = ()


@dataclass(frozen=True)
class Refusal:
    """No room in `usage.scope`: nothing was counted; the job waits for the budget."""

    usage: Usage


class Budget:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        warn_share: float = 0.8,
        ttl_s: float = DEFAULT_JOB_TTL_S,
    ) -> None:
        """`ttl_s`: how long a scope's spend is kept after its last call (a job's lifetime)."""
        self._r, self._keys, self.warn_share = client, keys, warn_share
        self._ttl_ms = int(ttl_s * 1000)
        self._charge = client.register_script(CHARGE)
        self._refund = client.register_script(REFUND)
        self._release = client.register_script(RELEASE)

    def charge(self, scopes: Sequence[str]) -> Charge | Refusal:
        k = self._keys
        reply = self._charge(
            keys=[k.budget_caps],
            args=[self.warn_share, k.budget_spent(""), self._ttl_ms, *scopes],
        )
        if reply[0] == "spent":
            return Refusal(Usage(str(reply[1]), int(reply[2]), int(reply[3])))
        crossed = tuple(
            Usage(str(reply[i]), int(reply[i + 1]), int(reply[i + 2]))
            for i in range(2, len(reply), 3)
        )
        return Charge((str(reply[1]), *scopes), crossed)

    def refund(self, scopes: Sequence[str]) -> None:
        """Give back a charge whose call was not made."""
        if scopes:
            self._refund(args=[self._keys.budget_spent(""), *scopes])

    def waiting(self, scope: str) -> None:
        """Note that jobs wait in `scope`'s set (after they were put there: `release` forgets a
        scope whose set it finds empty)."""
        self._r.sadd(self._keys.budget_waiting_scopes, scope)

    def release(self, limit: int) -> dict[str, int]:
        """Hand waiting jobs of scopes with room back to the parking lot; released per scope."""
        k = self._keys
        flat = self._release(
            keys=[k.budget_caps, k.budget_waiting_scopes, k.parked],
            args=[limit, k.budget_waiting(""), k.budget_spent("")],
        )
        return {str(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}

    def rediscover_waiting(self) -> int:
        """Note every scope that has waiting jobs, found by a key scan (an operator's command,
        in case a worker died between pausing a job and noting its scope)."""
        prefix = self._keys.budget_waiting("")
        scopes = [key.removeprefix(prefix) for key in self._r.scan_iter(f"{prefix}*", count=1000)]
        if scopes:
            self._r.sadd(self._keys.budget_waiting_scopes, *scopes)
        return len(scopes)

    def today(self) -> str:
        """Today's day scope on Redis time, as the scripts name it."""
        seconds, _ = self._r.time()
        return day_scope(datetime.fromtimestamp(seconds, UTC))

    def cap(self, scope: str) -> int | None:
        caps = self._r.hmget(self._keys.budget_caps, [scope, "day"])
        value = caps[0] if caps[0] is not None or not scope.startswith("day:") else caps[1]
        return None if value is None else int(value)

    def set_cap(self, scope: str, calls: int | None) -> None:
        """Cap `scope` at `calls` (None: unlimited again)."""
        if calls is None:
            self._r.hdel(self._keys.budget_caps, scope)
        elif calls < 0:
            raise ValueError("a budget cannot be negative")
        else:
            self._r.hset(self._keys.budget_caps, scope, calls)

    def raise_cap(self, scope: str, by: int) -> int:
        """Add `by` calls to `scope`'s cap (a day without its own cap starts from `day`'s);
        returns the new cap. A scope without a cap stays unlimited: ValueError."""
        current = self.cap(scope)
        if current is None:
            raise ValueError(f"{scope} has no cap to raise (it is unlimited)")
        if scope.startswith("day:") and self._r.hget(self._keys.budget_caps, scope) is None:
            self._r.hset(self._keys.budget_caps, scope, current)
        return int(self._r.hincrby(self._keys.budget_caps, scope, by))

    def usage(self, scopes: Iterable[str] = ()) -> list[Usage]:
        """Today, every scope with a cap or waiting jobs, and `scopes` (the queues, say)."""
        k = self._keys
        pipe = self._r.pipeline(transaction=False)
        pipe.hgetall(k.budget_caps)
        pipe.smembers(k.budget_waiting_scopes)
        caps, blocked = pipe.execute()
        shown = {self.today(), *scopes, *blocked} | {s for s in caps if s != "day"}
        ordered = sorted(shown, key=lambda s: (s.partition(":")[0] != "day", s))
        pipe = self._r.pipeline(transaction=False)
        for scope in ordered:
            pipe.hget(k.budget_spent(scope), "calls")
            pipe.zcard(k.budget_waiting(scope))
        counts = pipe.execute()
        rows = []
        for i, scope in enumerate(ordered):
            cap = caps.get(scope, caps.get("day") if scope.startswith("day:") else None)
            spent, waiting = int(counts[2 * i] or 0), int(counts[2 * i + 1])
            rows.append(Usage(scope, spent, None if cap is None else int(cap), waiting))
        return rows
