"""Staying inside the provider's limits across every worker: rate, in-flight cap and breaker.

`Limits.admit` is the one gate before a call: breaker, then an in-flight slot, then a rate slot
(sleeping when the slot is near, deferring the job when it is not), then the last check of
`gate.py` right before the call. What an answer to our own call means for the token is reported
back through `on_success`, `on_other_outcome`, `on_rate_limited` and `on_token_failure`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import redis

from faceswap_jobs.config import DEFAULT_JOB_TTL_S, Settings
from faceswap_jobs.keys import Keys
from faceswap_jobs.limits.breaker import CircuitBreaker, Verdict
from faceswap_jobs.limits.budget import Budget, Charge, Usage
from faceswap_jobs.limits.gate import Gate
from faceswap_jobs.limits.inflight import InflightSemaphore
from faceswap_jobs.limits.rate import RateConfig, RateLimiter
from faceswap_jobs.limits.snapshot import (
    BreakerSnapshot,
    LimitsSnapshot,
    publish_config,
    read_snapshot,
)

log = logging.getLogger(__name__)

GATE_ROUNDS = 3
"""Fresh slots a call may take when its slot went stale or it woke late, before it parks."""
LATE_FLOOR_S = 0.02
"""A thread is late when it wakes more than one interval after its slot, but never for less
than this: at hundreds of calls a second an interval is shorter than a thread's wake-up."""

__all__ = [
    "Admission",
    "BreakerSnapshot",
    "CircuitBreaker",
    "Limits",
    "LimitsSnapshot",
    "RateConfig",
    "Verdict",
    "token_id",
]


def token_id(token: str) -> str:
    """What names a token in Redis keys and logs: a short hash, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Admission:
    lease: str | None = None
    """The in-flight lease to release after the call; None when the call may not go now."""
    probe: bool = False
    """This call is the breaker's half-open probe."""
    defer_s: float = 0.0
    paused: bool = False
    """The token's breaker is open: the job waits for it to close, its budget untouched."""
    reason: str = ""
    over_budget: str = ""
    """The budget scope with no room left: the job waits for an operator to raise it."""
    charged: tuple[str, ...] = ()
    """The budget scopes the admitted call is counted in (`withdraw` gives them back)."""
    budget_crossed: tuple[Usage, ...] = ()
    """Budgets whose soft threshold this call crossed: announced by the caller, once."""

    @property
    def admitted(self) -> bool:
        return self.lease is not None


class Limits:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        tid: str,
        rate: RateConfig,
        *,
        max_in_flight: int,
        lease_ttl_s: float,
        short_wait_s: float,
        rate_wait_s: float,
        probe_lease_s: float,
        breaker_cooldown_s: float,
        breaker_max_cooldown_s: float,
        budget_warn_share: float = 0.8,
        budget_ttl_s: float = DEFAULT_JOB_TTL_S,
    ) -> None:
        self.token_id = tid
        self._r, self._keys = client, keys
        self.rate = RateLimiter(client, keys.rate(tid), keys.bulk_rate(tid), rate)
        self.gate = Gate(client, keys.rate(tid), keys.breaker(tid), keys.rate_sent(tid))
        self.inflight = InflightSemaphore(
            client, keys.inflight(tid), keys.inflight_wake(tid), max_in_flight, lease_ttl_s
        )
        self.breaker = CircuitBreaker(
            client,
            keys.breaker(tid),
            cooldown_s=breaker_cooldown_s,
            max_cooldown_s=breaker_max_cooldown_s,
        )
        self.budget = Budget(client, keys, budget_warn_share, budget_ttl_s)
        self.short_wait_s, self.rate_wait_s = short_wait_s, rate_wait_s
        self.probe_lease_s = probe_lease_s
        self._keeper: threading.Thread | None = None
        self._keeper_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis) -> Limits:
        """The limits of the token the settings name: `FACESWAP_TOKEN_ID` for an operator who
        does not hold the token, else the hash of `FACESWAP_API_TOKEN`."""
        rate = RateConfig(
            ceiling_per_s=settings.rate_per_s,
            burst=settings.rate_burst,
            floor_per_s=min(settings.rate_floor_per_s, settings.rate_per_s),
            headroom=settings.rate_headroom,
            window_margin_s=settings.rate_window_margin_s,
            increase_per_s=settings.rate_increase_per_s,
            pause_base_s=settings.backoff_base_s,
            pause_cap_s=settings.retry_after_cap_s,
            bulk_share=1.0 - settings.interactive_share,
        )
        return cls(
            client,
            Keys(settings.key_prefix),
            settings.token_id or token_id(settings.api_token.get_secret_value()),
            rate,
            max_in_flight=settings.max_in_flight,
            lease_ttl_s=settings.lease_ttl_s,
            short_wait_s=settings.short_wait_s,
            rate_wait_s=settings.rate_wait_s,
            probe_lease_s=settings.time_limit_s,
            breaker_cooldown_s=settings.breaker_cooldown_s,
            breaker_max_cooldown_s=settings.breaker_max_cooldown_s,
            budget_warn_share=settings.budget_warn_share,
            budget_ttl_s=settings.job_ttl_s,
        )

    def snapshot(self) -> LimitsSnapshot:
        """The token's rate, pause, in-flight calls and breaker, as one consistent read."""
        return read_snapshot(self._r, self._keys, self.token_id, self.rate, self.inflight.cap)

    def publish(self) -> None:
        """Tell every reader the ceiling, burst and in-flight cap this worker enforces."""
        publish_config(self._r, self._keys, self.token_id, self.rate.config, self.inflight.cap)

    def pause(self, reason: str) -> None:
        """Operator pause: every call of the token waits, nothing fails, until `resume`."""
        self.breaker.pause(reason)

    def resume(self) -> bool:
        """Close the breaker (operator pause or auth trip); paused jobs may go again."""
        return self.breaker.resume()

    def admit(self, caller: str, *, bulk: bool, scopes: Sequence[str] = ()) -> Admission:
        """`scopes`: the budgets the call is charged to besides the day's (`budget.job_scopes`)."""
        verdict = self.breaker.check(caller, self.probe_lease_s)
        if verdict.state == "open":
            return Admission(paused=True, defer_s=verdict.retry_in_s, reason=verdict.reason)
        probe = verdict.state == "probe"
        admission = self._take_slots(caller, bulk, tuple(scopes))
        if probe and not admission.admitted:
            self.breaker.abandon_probe(caller)
        return replace(admission, probe=probe) if admission.admitted else admission

    def _take_slots(self, caller: str, bulk: bool, scopes: tuple[str, ...]) -> Admission:
        """The budget is charged first, so a job with no budget left takes no slot (and spends
        no rate); the charge is given back when no slot comes."""
        self._ensure_keeper()
        charge = self.budget.charge(scopes)
        if not isinstance(charge, Charge):
            scope = charge.usage.scope
            return Admission(over_budget=scope, reason=f"budget: {scope}")
        lease = self.inflight.acquire(timeout_s=self.short_wait_s)
        if lease is None:
            self.budget.refund(charge.scopes)
            return Admission(defer_s=self.short_wait_s, reason="in-flight cap reached")
        admission = self._through_the_gate(caller, bulk)
        if admission is not None:
            self.inflight.release(lease)
            self.budget.refund(charge.scopes)
            return admission
        return Admission(lease=lease, charged=charge.scopes, budget_crossed=charge.crossed)

    def _through_the_gate(self, caller: str, bulk: bool) -> Admission | None:
        """None when the call may go now; else why and how long the job must wait.

        A rate slot is re-checked after the sleep for it (`Gate`): a stale or late one is
        traded for a fresh slot, a few times at most."""
        config = self.rate.config
        for _ in range(GATE_ROUNDS):
            grant = self.rate.acquire(max_wait_s=self.rate_wait_s, bulk=bulk)
            if not grant.granted:
                return Admission(defer_s=grant.wait_s, reason="rate limit")
            time.sleep(grant.wait_s)
            late_after_s = max(1.0 / grant.rate_per_s, LATE_FLOOR_S)
            waited_s = 0.0
            while True:
                verdict = self.gate.check(
                    caller,
                    generation=grant.generation,
                    due_at=grant.slot_at,
                    late_after_s=late_after_s + waited_s,
                    cap=config.window_cap(grant.rate_per_s),
                    margin_s=config.base_margin_s,
                )
                if verdict.verdict == "go":
                    return None
                if verdict.verdict == "breaker":
                    return Admission(paused=True, reason=verdict.reason)
                if verdict.verdict == "paused":
                    return Admission(defer_s=verdict.seconds, reason="provider asked to slow down")
                if verdict.verdict != "window" or verdict.seconds > self.rate_wait_s:
                    break
                time.sleep(verdict.seconds)
                waited_s += verdict.seconds
        return Admission(defer_s=self.short_wait_s, reason="rate limit")

    def release(self, admission: Admission) -> None:
        if admission.lease is not None:
            self.inflight.release(admission.lease)

    def withdraw(self, admission: Admission) -> None:
        """An admitted call that will not be made: free its slot and give back its budget."""
        self.release(admission)
        self.budget.refund(admission.charged)

    def hold(self, admission: Admission, ttl_s: float) -> None:
        """Keep the call's in-flight slot until its callback settles it (or `ttl_s` passes)."""
        if admission.lease is not None:
            self.inflight.hold(admission.lease, ttl_s)

    def on_success(self, admission: Admission) -> None:
        self._report("ok")
        self._probe_got_through(admission)

    def on_other_outcome(self, admission: Admission) -> None:
        """Answered, not rate limited and not an auth failure: a probe closes the breaker."""
        self._report("through")
        self._probe_got_through(admission)

    def on_rate_limited(self, admission: Admission, retry_after_s: float | None) -> float:
        """A 429 to our own call; returns how long every worker pauses (0 unless an outage)."""
        pause_s = self._report("limited", retry_after_s)
        self._probe_got_through(admission)
        return pause_s

    def _report(self, outcome: str, retry_after_s: float | None = None) -> float:
        change = self.rate.on_outcome(outcome, retry_after_s)
        if change.what != "steady":
            log.info(
                "token %s: 429s say %s; rate now %.2f/s, pause %.2fs",
                self.token_id, change.what, change.rate_per_s, change.pause_s,
            )  # fmt: skip
        return change.pause_s

    def _probe_got_through(self, admission: Admission) -> None:
        if admission.probe and self.breaker.close():
            log.warning("token %s: probe got through, breaker closed", self.token_id)

    def on_token_failure(self, reason: str, code: str | None) -> float:
        cooldown_s = self.breaker.trip(reason, code)
        log.warning(
            "token %s: breaker open (%s: %s); its jobs wait, probe in %.0fs",
            self.token_id,
            code,
            reason,
            cooldown_s,
        )
        return cooldown_s

    def _ensure_keeper(self) -> None:
        """Start, once per process, the thread that renews this process's in-flight leases."""
        with self._keeper_lock:
            if self._keeper is None or not self._keeper.is_alive():
                self._keeper = threading.Thread(
                    target=self._keep_leases, name="faceswap-lease-keeper", daemon=True
                )
                self._keeper.start()

    def _keep_leases(self) -> None:
        period_s = max(0.5, self.inflight.lease_ttl_s / 3)
        while True:
            time.sleep(period_s)
            try:
                self.inflight.renew_held()
            except redis.RedisError as exc:
                log.warning("could not renew in-flight leases: %s", exc)
