"""A pool of API tokens: each call goes with the token that has the most room.

Every token keeps its own limits (`Limits`: rate, in-flight cap, breaker, keyed by its hash), so
the provider sees each token inside its own limits; the pool only chooses. One Redis read
(`VIEW`) shows every token's next rate slot, calls in flight and breaker; a call then tries the
tokens in this order:

1. a token whose breaker's cool-down is over (its one probe call brings it back when it works);
2. tokens whose next rate slot is free now, in a random order weighted by weight times the share
   of their in-flight slots still free, so the work spreads by weight while every token has room;
3. the others, earliest rate slot first: at full load each token runs at its own rate.

The first token that grants an in-flight slot and a rate slot takes the call. A token whose
breaker is open (401, `used_up`, `disabled`) or that an operator retired is skipped, so its work
goes to the others; with no token left the job waits `paused`, and fails nothing. The budget is
charged once per call, before any token is tried, whichever token then makes it.

Tokens come from the settings: `FACESWAP_API_TOKENS_FILE` is read again when it changes, and the
retired set in Redis is read every `tokens_reload_s`, so tokens join and leave without a restart.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import redis

from faceswap_jobs.config import PoolToken, Settings
from faceswap_jobs.keys import Keys
from faceswap_jobs.limits import Admission, Limits
from faceswap_jobs.limits.budget import Budget, Charge
from faceswap_jobs.limits.lua import REDIS_NOW_LUA

log = logging.getLogger(__name__)

VIEW = (
    REDIS_NOW_LUA
    + """
-- KEYS: per token, 4 keys: rate hash, bulk rate hash, in-flight sorted set, breaker hash
-- ARGV: [1] 1 when the call is bulk work
-- Returns per token {in flight, seconds to its next rate slot, breaker}: breaker is closed,
-- open, due (open, its cool-down over: the next caller is its probe) or manual (operator).
local now = redis_now()
local out = {}
for i = 1, #KEYS, 4 do
  local r = redis.call('HMGET', KEYS[i], 'tat', 'paused_until')
  local next_at = math.max(tonumber(r[1]) or 0, tonumber(r[2]) or 0)
  if ARGV[1] == '1' then
    next_at = math.max(next_at, tonumber(redis.call('HGET', KEYS[i + 1], 'tat')) or 0)
  end
  local in_flight = redis.call('ZCOUNT', KEYS[i + 2], now, '+inf')
  local b = redis.call('HMGET', KEYS[i + 3], 'state', 'manual', 'probe_at', 'probe_until')
  local breaker = 'closed'
  if b[1] then
    if b[2] == '1' then
      breaker = 'manual'
    elseif now >= (tonumber(b[3]) or now) and now >= (tonumber(b[4]) or 0) then
      breaker = 'due'
    else
      breaker = 'open'
    end
  end
  out[#out + 1] = tostring(in_flight)
  out[#out + 1] = tostring(math.max(0, next_at - now))
  out[#out + 1] = breaker
end
return out
"""
)

RETIRED_CHECK_S = 1.0
"""How stale the retired set may be when the reload period is longer: a retired token stops
taking calls within this."""
SEEN_TTL_S = 60.0
"""A token no worker has said it holds for this long is no longer listed by operator commands."""


@dataclass(frozen=True)
class Member:
    token: PoolToken
    limits: Limits

    @property
    def id(self) -> str:
        return self.limits.token_id


@dataclass(frozen=True)
class Standing:
    """One token as the view saw it."""

    member: Member
    in_flight: int
    wait_s: float
    breaker: str

    @property
    def room(self) -> float:
        """Share of the in-flight cap still free."""
        cap = self.member.limits.inflight.cap
        return max(0.0, (cap - self.in_flight) / cap)


def call_order(standings: Sequence[Standing], rng: random.Random) -> list[Standing]:
    """The order the tokens are tried in for one call (see the module's docstring). Tokens
    whose breaker is open come last: they only say why the job must wait."""
    due = [s for s in standings if s.breaker == "due"]
    usable = [s for s in standings if s.breaker == "closed"]
    free_now = [s for s in usable if s.wait_s <= _slot_s(s) and s.room > 0]
    later = sorted((s for s in usable if s not in free_now), key=lambda s: (s.room <= 0, s.wait_s))
    shut = [s for s in standings if s.breaker in ("open", "manual")]
    return [*due, *_weighted_shuffle(free_now, rng), *later, *shut]


def _slot_s(standing: Standing) -> float:
    """A slot this close is free now: one interval of the token's rate."""
    return 1.0 / standing.member.limits.rate.config.ceiling_per_s


def _weighted_shuffle(standings: list[Standing], rng: random.Random) -> list[Standing]:
    """Each position drawn in proportion to weight x free in-flight share (Efraimidis-Spirakis):
    a token of twice the weight comes first twice as often."""

    def key(s: Standing) -> float:
        weight = s.member.token.weight * s.room
        return rng.random() ** (1.0 / weight) if weight > 0 else 0.0

    return sorted(standings, key=key, reverse=True)


class TokenPool:
    """Every token a worker may call with, and the choice of one per call."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self._settings, self._r = settings, client
        self._keys = Keys(settings.key_prefix)
        self.budget = Budget(client, self._keys, settings.budget_warn_share, settings.job_ttl_s)
        self._view = client.register_script(VIEW)
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._members: dict[str, Member] = {}
        self._gone: dict[str, Member] = {}
        self._retired: frozenset[str] = frozenset()
        self._file_stamp: tuple[float, int] | None = None
        self._next_file_look = 0.0
        self._next_retired_look = 0.0
        self._load(settings.token_pool())

    @property
    def members(self) -> list[Member]:
        """Every token held now, retired ones included."""
        self._refresh()
        return list(self._members.values())

    def in_service(self) -> list[Member]:
        """The tokens calls may go with: held and not retired."""
        self._refresh()
        return [m for m in self._members.values() if m.id not in self._retired]

    def member(self, tid: str) -> Member | None:
        """The token of an earlier admission, even when it has left the pool since: its call
        still reports its outcome and frees its slot."""
        return self._members.get(tid) or self._gone.get(tid)

    def admit(self, caller: str, *, bulk: bool, scopes: Sequence[str] = ()) -> Admission:
        """A slot on the token with the most room, after the call's budget (`scopes`: the
        budgets besides the day's, `budget.job_scopes`)."""
        members = self.in_service()
        if not members:
            return Admission(paused=True, reason="no token in service (all retired)")
        charge = self.budget.charge(scopes)
        if not isinstance(charge, Charge):
            scope = charge.usage.scope
            return Admission(over_budget=scope, reason=f"budget: {scope}")
        admission = self._choose(caller, bulk, members)
        if not admission.admitted:
            self.budget.refund(charge.scopes)
            return admission
        return replace(admission, charged=charge.scopes, budget_crossed=charge.crossed)

    def _choose(self, caller: str, bulk: bool, members: list[Member]) -> Admission:
        """Try the tokens in `call_order`; when every usable one is at its in-flight cap, wait
        (up to `short_wait_s`) for any of them to free a slot and try again."""
        deadline = time.monotonic() + self._settings.short_wait_s
        while True:
            order = call_order(self._standings(members, bulk), self._rng)
            refusals = []
            for standing in order:
                admission = standing.member.limits.admit(caller, bulk=bulk, inflight_wait_s=0.0)
                if admission.admitted:
                    return admission
                refusals.append(admission)
            left_s = deadline - time.monotonic()
            full = [a.token_id for a in refusals if a.full]
            if not full or left_s <= 0 or len(full) < len(refusals):
                return _refusal(refusals)
            wake = [self._keys.inflight_wake(tid) for tid in full]
            self._r.blpop(wake, timeout=max(0.05, min(1.0, left_s)))

    def _standings(self, members: list[Member], bulk: bool) -> list[Standing]:
        keys: list[str] = []
        for m in members:
            keys += [self._keys.rate(m.id), self._keys.bulk_rate(m.id),
                     self._keys.inflight(m.id), self._keys.breaker(m.id)]  # fmt: skip
        raw = self._view(keys=keys, args=[int(bulk)])
        return [
            Standing(m, int(raw[3 * i]), float(raw[3 * i + 1]), str(raw[3 * i + 2]))
            for i, m in enumerate(members)
        ]

    def usable_besides(self, tid: str) -> bool:
        """Another token in service whose breaker is closed: a job whose token just failed goes
        on with it instead of waiting."""
        others = [m for m in self.in_service() if m.id != tid]
        return (
            any(s.breaker == "closed" for s in self._standings(others, False)) if others else False
        )

    def release_state(self) -> str:
        """What the scheduler may do with jobs paused by breakers: `all` go (a token is usable),
        `probe` (one goes: a cool-down is over), or `none`."""
        members = self.in_service()
        if not members:
            return "none"
        breakers = {s.breaker for s in self._standings(members, False)}
        if "closed" in breakers:
            return "all"
        return "probe" if "due" in breakers else "none"

    def publish(self) -> None:
        """Tell every reader which tokens this worker holds and the limits it enforces."""
        members = self.members
        seconds, _ = self._r.time()
        pipe = self._r.pipeline(transaction=False)
        for m in members:
            pipe.zadd(self._keys.tokens_seen(), {m.id: seconds})
        pipe.zremrangebyscore(self._keys.tokens_seen(), "-inf", seconds - SEEN_TTL_S)
        pipe.expire(self._keys.tokens_seen(), int(SEEN_TTL_S))
        pipe.execute()
        for m in members:
            m.limits.publish(weight=m.token.weight)

    # What an answer says about the token that made the call.

    def release(self, admission: Admission) -> None:
        if (m := self.member(admission.token_id)) is not None:
            m.limits.release(admission)

    def withdraw(self, admission: Admission, caller: str) -> None:
        """An admitted call that will not be made: free its slot, hand on its probe, give back
        its budget."""
        if (m := self.member(admission.token_id)) is not None:
            m.limits.release(admission)
            if admission.probe:
                m.limits.breaker.abandon_probe(caller)
        self.budget.refund(admission.charged)

    def hold(self, admission: Admission, ttl_s: float) -> None:
        if (m := self.member(admission.token_id)) is not None:
            m.limits.hold(admission, ttl_s)

    def on_success(self, admission: Admission) -> None:
        if (m := self.member(admission.token_id)) is not None:
            m.limits.on_success(admission)

    def on_other_outcome(self, admission: Admission) -> None:
        if (m := self.member(admission.token_id)) is not None:
            m.limits.on_other_outcome(admission)

    def on_rate_limited(self, admission: Admission, retry_after_s: float | None) -> float:
        if (m := self.member(admission.token_id)) is not None:
            return m.limits.on_rate_limited(admission, retry_after_s)
        return 0.0

    def on_token_failure(self, admission: Admission, reason: str, code: str | None) -> float:
        if (m := self.member(admission.token_id)) is not None:
            return m.limits.on_token_failure(reason, code)
        return 0.0

    # Keeping the pool current.

    def _refresh(self) -> None:
        now = time.monotonic()
        if now < self._next_retired_look and now < self._next_file_look:
            return
        with self._lock:
            if now >= self._next_retired_look:
                self._next_retired_look = now + min(RETIRED_CHECK_S, self._settings.tokens_reload_s)
                self._retired = frozenset(self._r.smembers(self._keys.tokens_retired()))
            if now >= self._next_file_look:
                self._next_file_look = now + self._settings.tokens_reload_s
                self._reload_file()

    def _reload_file(self) -> None:
        """Read the tokens file again when its modification time or size changed; a file that
        cannot be read or parsed keeps the pool as it was (and says why)."""
        path = self._settings.api_tokens_file
        if path is None:
            return
        try:
            stat = os.stat(path)
        except OSError as exc:
            log.error("tokens file %s: %s; keeping the %d token(s) held", path,
                      exc.strerror or type(exc).__name__, len(self._members))  # fmt: skip
            return
        stamp = (stat.st_mtime, stat.st_size)
        if stamp == self._file_stamp:
            return
        try:
            tokens = self._settings.token_pool()
        except ValueError as exc:
            log.error("%s; keeping the %d token(s) held", exc, len(self._members))
            return
        self._file_stamp = stamp
        self._load(tokens)

    def _load(self, tokens: Sequence[PoolToken]) -> None:
        before = set(self._members)
        combined = self._settings.pool_rate_per_s(tokens)
        rate_wait_s = max(self._settings.short_wait_s, self._settings.concurrency / combined)
        members = {}
        for token in tokens:
            held = self._members.get(token.id)
            members[token.id] = (
                held if held is not None and held.token == token
                else Member(token, Limits.from_settings(self._settings, self._r, token,
                                                        rate_wait_s=rate_wait_s))
            )  # fmt: skip
        self._gone.update({tid: m for tid, m in self._members.items() if tid not in members})
        for tid in members:
            self._gone.pop(tid, None)
        self._members = members
        added, removed = set(members) - before, before - set(members)
        if before and (added or removed):
            log.warning("token pool now %d token(s): added %s, removed %s", len(members),
                        ", ".join(sorted(added)) or "none",
                        ", ".join(sorted(removed)) or "none")  # fmt: skip


def _refusal(refusals: list[Admission]) -> Admission:
    """Why no token took the call: paused when every token's breaker is open (the job waits
    for one to close, with the first one's reason), else the shortest wait among the tokens."""
    waits = [a for a in refusals if not a.paused]
    if not waits:
        return refusals[0]
    return min(waits, key=lambda a: a.defer_s)
