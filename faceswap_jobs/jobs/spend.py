"""Spend counters: every ended call counted once, by token, queue, day, batch and job.

Counted in the script that ends the call (`END_ATTEMPT` composes `SPEND_COUNTING_LUA`), so a
report over millions of calls reads a few hashes instead of walking job histories:

- `{prefix}:spend:day:YYYY-MM-DD` (UTC), fields `token|queue|measure`, kept `KEEP_DAYS`; the
  days that have one are indexed in `{prefix}:spend:days` (score: the day's number), so
  `--since` reads one hash a day;
- the batch's hash, fields `spend|token|queue|measure`, living as long as the batch;
- `{prefix}:spend:billed`, `billed:token:queue` and `possibly_billed:token:queue`, never
  reset (the `faceswap_calls_billed_total` counter);
- the job's hash, `billed_calls` and `possibly_billed_calls` (the export's columns).

A measure is `calls:<outcome>`, `billed`, `possibly_billed` or `repeat:<cause>` (a call that
did not succeed and sent its job to another call; `billing.RepeatCause`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import redis

from faceswap_jobs.jobs.billing import Billing, RepeatCause, billing_of, repeat_cause
from faceswap_jobs.keys import Keys

KEEP_DAYS = 400
"""Day buckets outlive a year, so `--since` reaches back over any monthly bill."""
BATCH_FIELD_PREFIX = "spend|"
UNKNOWN_TOKEN = "unknown"

SPEND_COUNTING_LUA = """
local function count_spend(job_key, billed_key, day_key, days_key, batch_key, token, outcome,
                           billing, cause, day, day_number, keep_s)
  local queue = redis.call('HGET', job_key, 'queue') or ''
  local head = token .. '|' .. queue .. '|'
  local measures = {'calls:' .. outcome}
  if billing ~= 'not_billed' then
    table.insert(measures, billing)
    redis.call('HINCRBY', job_key, billing .. '_calls', 1)
    redis.call('HINCRBY', billed_key, billing .. ':' .. token .. ':' .. queue, 1)
  end
  if cause ~= '' then table.insert(measures, 'repeat:' .. cause) end
  for _, measure in ipairs(measures) do
    redis.call('HINCRBY', day_key, head .. measure, 1)
    if batch_key then redis.call('HINCRBY', batch_key, 'spend|' .. head .. measure, 1) end
  end
  redis.call('EXPIRE', day_key, keep_s)
  redis.call('ZADD', days_key, day_number, day)
  redis.call('ZREMRANGEBYSCORE', days_key, '-inf', '(' .. (day_number - keep_s / 86400))
  redis.call('EXPIRE', days_key, keep_s)
end
"""
"""Lua function `count_spend(...)`: the counting of one ended call, in every scope."""


def day_of(now: float) -> date:
    return datetime.fromtimestamp(now, UTC).date()


def spend_args(outcome: str, error: dict[str, Any] | None, repeats: bool, now: float) -> list[Any]:
    """The ending script's arguments for the spend of a call that ended with `outcome`: its
    billing, why it repeats ('' unless `repeats`), its UTC day, the day's number, how long
    day buckets are kept (s)."""
    cause = repeat_cause(outcome, error) if repeats else ""
    day = day_of(now)
    return [billing_of(outcome, error), cause, day.isoformat(), day.toordinal(),
            KEEP_DAYS * 86400]  # fmt: skip


@dataclass
class Spend:
    """Calls of one scope (a token, a queue, a batch, everything) as the counters have them."""

    calls: dict[str, int] = field(default_factory=dict)
    """Ended calls by outcome (`succeeded`, `retry`, `defer`, `pause`, `failed`, ...)."""
    billed: int = 0
    possibly_billed: int = 0
    repeats: dict[str, int] = field(default_factory=dict)
    """Calls that sent their job to another call, by cause (`RepeatCause`)."""

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def successes(self) -> int:
        return self.calls.get("succeeded", 0)

    @property
    def not_billed(self) -> int:
        return self.total_calls - self.billed - self.possibly_billed

    @property
    def calls_per_success(self) -> float | None:
        return self.total_calls / self.successes if self.successes else None

    def add(self, measure: str, value: int) -> None:
        kind, _, name = measure.partition(":")
        if kind == "calls":
            self.calls[name] = self.calls.get(name, 0) + value
        elif kind == "repeat":
            self.repeats[name] = self.repeats.get(name, 0) + value
        elif measure == Billing.BILLED:
            self.billed += value
        elif measure == Billing.POSSIBLY:
            self.possibly_billed += value

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.total_calls,
            "calls_by_outcome": dict(sorted(self.calls.items())),
            "succeeded": self.successes,
            "billed": self.billed,
            "possibly_billed": self.possibly_billed,
            "not_billed": self.not_billed,
            "calls_per_success": self.calls_per_success,
            "repeats": sum(self.repeats.values()),
            "repeats_by_cause": {c: self.repeats.get(c, 0) for c in RepeatCause},
        }


@dataclass
class SpendReport:
    """One scope's spend, and the same broken down by token and by queue."""

    total: Spend = field(default_factory=Spend)
    by_token: dict[str, Spend] = field(default_factory=lambda: defaultdict(Spend))
    by_queue: dict[str, Spend] = field(default_factory=lambda: defaultdict(Spend))

    def add(self, token: str, queue: str, measure: str, value: int) -> None:
        for spend in (self.total, self.by_token[token], self.by_queue[queue]):
            spend.add(measure, value)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total.as_dict(),
            "by_token": {t: s.as_dict() for t, s in sorted(self.by_token.items())},
            "by_queue": {q: s.as_dict() for q, s in sorted(self.by_queue.items())},
        }


def _report(fields: Iterable[tuple[str, str]], into: SpendReport | None = None) -> SpendReport:
    """Fields `token|queue|measure` (a queue name may itself hold `|`)."""
    report = into or SpendReport()
    for name, value in fields:
        token, _, rest = name.partition("|")
        queue, _, measure = rest.rpartition("|")
        if token and measure:
            report.add(token, queue, measure, int(value))
    return report


def spend_days(client: redis.Redis, keys: Keys, since: date | None = None) -> list[date]:
    """The UTC days that have spend counters, oldest first (from `since` on, when given)."""
    low = since.toordinal() if since else "-inf"
    return [date.fromisoformat(d) for d in client.zrangebyscore(keys.spend_days, low, "+inf")]


def read_days(client: redis.Redis, keys: Keys, since: date | None = None) -> SpendReport:
    """Every call counted from `since` (UTC day, inclusive; None: every day kept), one HGETALL
    a day."""
    days = spend_days(client, keys, since)
    pipe = client.pipeline(transaction=False)
    for day in days:
        pipe.hgetall(keys.spend_day(day.isoformat()))
    report = SpendReport()
    for raw in pipe.execute():
        _report(raw.items(), report)
    return report


def read_batch(client: redis.Redis, keys: Keys, batch: str) -> SpendReport:
    """Every call made for the batch's rows, from its hash's `spend|` fields."""
    raw = client.hgetall(keys.batch(batch))
    return _report(
        (name.removeprefix(BATCH_FIELD_PREFIX), value)
        for name, value in raw.items()
        if name.startswith(BATCH_FIELD_PREFIX)
    )


RECENT_DAYS = 7


def recent_calls_per_success(
    client: redis.Redis, keys: Keys, today: date, days: int = RECENT_DAYS
) -> float | None:
    """Calls per success over the last `days` UTC days (today included); None without a
    success in them."""
    return read_days(client, keys, today - timedelta(days=days - 1)).total.calls_per_success


def billed_counters(client: redis.Redis, keys: Keys) -> list[tuple[str, str, str, float]]:
    """(certainty, token, queue, count) of every billed and possibly billed call ever counted;
    certainty is `billed` or `possibly`."""
    found = []
    for name, value in client.hgetall(keys.spend_billed).items():
        kind, _, rest = name.partition(":")
        if kind in (Billing.BILLED, Billing.POSSIBLY):
            token, _, queue = rest.partition(":")
            certainty = "billed" if kind == Billing.BILLED else "possibly"
            found.append((certainty, token, queue, float(value)))
    return sorted(found)
