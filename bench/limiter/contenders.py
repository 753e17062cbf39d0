"""Who runs in `bench.limiter`: each contender, the provider it meets and how it is configured.

Scenario names are strings ("1", "1b", "2", "3", "breaker", "deadline"); the issue's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

R_PER_S = 20.0
OUR_BURST = 1
INSTANCES = 2
CONCURRENCY = 2
ADAPTIVE_PROVIDER_PER_S = 15.0
ADAPTIVE_CONFIGURED_PER_S = 40.0
WIDE_INSTANCES, WIDE_CONCURRENCY = 4, 8
"""Scenario 1b: 4 worker processes x 8 threads against a sliding window."""
NOISE_CONFIGURED_PER_S = 30.0
NOISE_SHARES = (0.02, 0.10, 0.20)
NOISE_INSTANCES, NOISE_CONCURRENCY = 2, 8
NOISE_RETRY_AFTER_S = 1.0
BREAKER_JOBS, BREAKER_CONCURRENCY, BREAKER_RATE_PER_S = 200, 64, 50.0
BREAKER_TAG = "revoked-token"
"""In every breaker job's source URL; the emulator's rule answers those calls 401."""
DEADLINE_JOBS, DEADLINE_CONCURRENCY, DEADLINE_RATE_PER_S, DEADLINE_S = 40, 8, 2.0, 10.0

Kind = Literal["ours", "celery"]


@dataclass(frozen=True)
class Contender:
    name: str
    scenario: str
    kind: Kind
    jobs: int
    provider_per_s: float | None
    """What the emulator enforces per token; None: no limit."""
    configured: str
    """What the contender is told, as a user would write it."""
    setting: str
    """FACESWAP_RATE_PER_S for ours, the `rate_limit` string for Celery."""
    rate_window: Literal["bucket", "sliding"] = "bucket"
    """The emulator's limit: a token bucket of `provider_per_s` calls, or a sliding 1-s window."""
    fault_429: float = 0.0
    """Share of calls the emulator answers with a random 429 (Retry-After 1 s)."""
    instances: int = INSTANCES
    concurrency: int = CONCURRENCY
    burst: int = OUR_BURST
    """FACESWAP_RATE_BURST (ours); 0 is the strict mode."""
    deadline_s: float | None = None
    """FACESWAP_DEADLINE_S (ours) when set."""
    revoked: bool = False
    """The emulator answers every call of this contender 401 invalid_token."""

    def provider(self) -> dict[str, Any]:
        """The emulator's settings for this contender (keyword arguments of `Emulator.reset`)."""
        bucket = self.rate_window == "bucket" and self.provider_per_s is not None
        rules = [
            {"source_contains": BREAKER_TAG, "status": 401, "code": "invalid_token",
             "message": "revoked"}
        ] if self.revoked else []  # fmt: skip
        return {
            "rate_per_s": self.provider_per_s,
            "burst": int(self.provider_per_s) if bucket and self.provider_per_s else None,
            "rate_window": self.rate_window,
            "fault_429": self.fault_429,
            "retry_after_s": NOISE_RETRY_AFTER_S,
            "rules": rules,
        }


def contenders(jobs: int, adaptive_jobs: int, noise_jobs: int) -> list[Contender]:
    r, half = f"{R_PER_S:g}/s", f"{R_PER_S / INSTANCES:g}/s"
    a = f"{ADAPTIVE_CONFIGURED_PER_S:g}"
    wide = {"rate_window": "sliding", "instances": WIDE_INSTANCES,
            "concurrency": WIDE_CONCURRENCY}  # fmt: skip
    noisy = {"instances": NOISE_INSTANCES, "concurrency": NOISE_CONCURRENCY}
    n = f"{NOISE_CONFIGURED_PER_S:g}"
    return [
        Contender("ours", "1", "ours", jobs, R_PER_S, f"{r} global", f"{R_PER_S:g}"),
        Contender("celery-R-per-instance", "1", "celery", jobs, R_PER_S, f"{r} per worker", r),
        Contender(
            "celery-R-over-instances", "1", "celery", jobs, R_PER_S, f"{half} per worker", half
        ),
        Contender("ours-strict-4x8", "1b", "ours", jobs, R_PER_S, f"{r} burst 0",
                  f"{R_PER_S:g}", burst=0, **wide),
        Contender("ours-default-4x8", "1b", "ours", jobs, R_PER_S, f"{r} burst 1",
                  f"{R_PER_S:g}", burst=1, **wide),
        Contender("ours-adaptive", "2", "ours", adaptive_jobs, ADAPTIVE_PROVIDER_PER_S,
                  f"{a}/s", a),
        *(
            Contender(f"ours-noise-{share * 100:g}", "3", "ours", noise_jobs, None,
                      f"{n}/s", n, fault_429=share, **noisy)
            for share in NOISE_SHARES
        ),
        Contender("ours-breaker", "breaker", "ours", BREAKER_JOBS, None, "revoked token",
                  f"{BREAKER_RATE_PER_S:g}", concurrency=BREAKER_CONCURRENCY, instances=1,
                  revoked=True),
        Contender("ours-deadline", "deadline", "ours", DEADLINE_JOBS, None,
                  f"{DEADLINE_RATE_PER_S:g}/s, deadline {DEADLINE_S:g} s",
                  f"{DEADLINE_RATE_PER_S:g}", concurrency=DEADLINE_CONCURRENCY, instances=1,
                  deadline_s=DEADLINE_S),
    ]  # fmt: skip
