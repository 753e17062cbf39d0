"""Staying inside the provider's limits across every worker: rate, in-flight cap and breaker.

`Limits.admit` is the one gate before a call: breaker, then an in-flight slot, then a rate slot
(sleeping when the slot is near, deferring the job when it is not), then the last check of
`gate.py` right before the call. What an answer to our own call means for the token is reported
back through `on_success`, `on_other_outcome`, `on_rate_limited` and `on_token_failure`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace

import redis

from faceswap_jobs.config import PoolToken, Settings, token_hash
from faceswap_jobs.keys import Keys
from faceswap_jobs.limits.breaker import CircuitBreaker, Verdict
from faceswap_jobs.limits.budget import Usage
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
    return token_hash(token)


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
    token_id: str = ""
    """The token the call goes with (or, refused, the token that refused it)."""
    full: bool = False
    """Refused for the in-flight cap: a slot may free at any moment."""

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
        self.short_wait_s, self.rate_wait_s = short_wait_s, rate_wait_s
        self.probe_lease_s = probe_lease_s
        self._keeper: threading.Thread | None = None
        self._keeper_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        client: redis.Redis,
        token: PoolToken | None = None,
        *,
        tid: str | None = None,
        rate_wait_s: float | None = None,
    ) -> Limits:
        """The limits of `token` (a pool's member, with its own rate, burst and cap), or of the
        token named by `tid` or by the settings: `FACESWAP_TOKEN_ID` for an operator who does
        not hold the token, else the hash of `FACESWAP_API_TOKEN`."""
        ceiling = (token.rate_per_s if token else None) or settings.rate_per_s
        burst = token.rate_burst if token and token.rate_burst is not None else settings.rate_burst
        rate = RateConfig(
            ceiling_per_s=ceiling,
            burst=burst,
            floor_per_s=min(settings.rate_floor_per_s, ceiling),
            headroom=settings.rate_headroom,
            window_margin_s=settings.rate_window_margin_s,
            increase_per_s=settings.rate_increase_per_s,
            pause_base_s=settings.backoff_base_s,
            pause_cap_s=settings.retry_after_cap_s,
            bulk_share=1.0 - settings.interactive_share,
        )
        if token is not None:
            tid = token.id
        return cls(
            client,
            Keys(settings.key_prefix),
            tid or settings.token_id or token_id(settings.api_token.get_secret_value()),
            rate,
            max_in_flight=(token.max_in_flight if token else None) or settings.max_in_flight,
            lease_ttl_s=settings.lease_ttl_s,
            short_wait_s=settings.short_wait_s,
            rate_wait_s=settings.rate_wait_s if rate_wait_s is None else rate_wait_s,
            probe_lease_s=settings.time_limit_s,
            breaker_cooldown_s=settings.breaker_cooldown_s,
            breaker_max_cooldown_s=settings.breaker_max_cooldown_s,
        )

    def snapshot(self) -> LimitsSnapshot:
        """The token's rate, pause, in-flight calls and breaker, as one consistent read."""
        return read_snapshot(self._r, self._keys, self.token_id, self.rate, self.inflight.cap)

    def publish(self, weight: float = 1.0) -> None:
        """Tell every reader the ceiling, burst, in-flight cap and weight this worker enforces."""
        publish_config(
            self._r, self._keys, self.token_id, self.rate.config, self.inflight.cap, weight
        )

    def pause(self, reason: str) -> None:
        """Operator pause: every call of the token waits, nothing fails, until `resume`."""
        self.breaker.pause(reason)

    def resume(self) -> bool:
        """Close the breaker (operator pause or auth trip); paused jobs may go again."""
        return self.breaker.resume()

    def admit(self, caller: str, *, bulk: bool, inflight_wait_s: float) -> Admission:
        """Breaker, in-flight slot (waiting up to `inflight_wait_s` for one), rate slot: the
        token's own gates, in that order. Budgets are the pool's (`TokenPool.admit`)."""
        verdict = self.breaker.check(caller, self.probe_lease_s)
        if verdict.state == "open":
            return self._refused(paused=True, defer_s=verdict.retry_in_s, reason=verdict.reason)
        probe = verdict.state == "probe"
        self._ensure_keeper()
        lease = self.inflight.acquire(timeout_s=inflight_wait_s)
        if lease is None:
            admission = self._refused(defer_s=self.short_wait_s, reason="in-flight cap reached",
                                      full=True)  # fmt: skip
        else:
            admission = self._through_the_gate(caller, bulk) or Admission(
                lease=lease, token_id=self.token_id
            )
            if not admission.admitted:
                self.inflight.release(lease)
        if probe and not admission.admitted:
            self.breaker.abandon_probe(caller)
        return replace(admission, probe=probe) if admission.admitted else admission

    def _refused(self, **why: object) -> Admission:
        return replace(Admission(token_id=self.token_id), **why)  # type: ignore[arg-type]

    def _through_the_gate(self, caller: str, bulk: bool) -> Admission | None:
        """None when the call may go now; else why and how long the job must wait.

        A rate slot is re-checked after the sleep for it (`Gate`): a stale or late one is
        traded for a fresh slot, a few times at most."""
        config = self.rate.config
        for _ in range(GATE_ROUNDS):
            grant = self.rate.acquire(max_wait_s=self.rate_wait_s, bulk=bulk)
            if not grant.granted:
                return self._refused(defer_s=grant.wait_s, reason="rate limit")
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
                    return self._refused(paused=True, reason=verdict.reason)
                if verdict.verdict == "paused":
                    return self._refused(defer_s=verdict.seconds,
                                         reason="provider asked to slow down")  # fmt: skip
                if verdict.verdict != "window" or verdict.seconds > self.rate_wait_s:
                    break
                time.sleep(verdict.seconds)
                waited_s += verdict.seconds
        return self._refused(defer_s=self.short_wait_s, reason="rate limit")

    def release(self, admission: Admission) -> None:
        if admission.lease is not None:
            self.inflight.release(admission.lease)

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
