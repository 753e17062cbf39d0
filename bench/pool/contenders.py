"""Who runs in `bench.pool`: the provider's tokens and their limits, and each contender's tokens.

The provider (the emulator) is the same for every contender: three tokens, each limited to its
own rate by a token bucket of one second's worth. Only what the workers are given changes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

from faceswap_jobs.emulator.auth import token_hash

TOKEN_RATES = (10.0, 20.0, 30.0)
"""Calls/s the provider allows each token of the pool."""
REVOKED_RATE = 20.0
"""Scenario 2 revokes the token of this rate."""
BASELINE_RATE = 30.0
"""The baseline calls with the token of this rate alone."""
REVOKE_AFTER_SHARE = 1 / 3
"""Scenario 2 revokes once this share of the jobs has finished."""
SETTLE_S = 5.0
"""Seconds after the revocation left out of the rate after it: the pool is still finding out."""
INSTANCES, CONCURRENCY = 2, 16
"""Worker processes x threads each, for every contender (`--instances`, `--concurrency`)."""
POOL_CAP_FLOOR_S = 60.0
"""Added to twice the ideal run time of a pool contender to bound it (see `pool_cap_s`)."""

Scenario = Literal["1", "2", "baseline"]


@dataclass(frozen=True)
class PoolToken:
    """One token of the provider: the secret (never printed or written) and what names it."""

    token: str
    rate_per_s: float

    @property
    def hash(self) -> str:
        """The emulator ledger's `token_hash`, and the worker's token id (sha256[:16])."""
        return token_hash(self.token)

    @property
    def label(self) -> str:
        return f"{self.rate_per_s:g}/s"


def new_tokens() -> tuple[PoolToken, ...]:
    """Fresh tokens for this run, one per rate of `TOKEN_RATES`."""
    return tuple(PoolToken(f"bench-pool-{secrets.token_hex(8)}", r) for r in TOKEN_RATES)


@dataclass(frozen=True)
class Contender:
    name: str
    scenario: Scenario
    jobs: int
    rates: tuple[float, ...]
    """Rates of the tokens the workers call with (each token's rate as they are told it)."""
    cap_s: float
    """Longest run, first submit to the last job's end."""
    pool: bool = True
    """FACESWAP_API_TOKENS (a pool); else the one token in FACESWAP_API_TOKEN."""
    revoke: bool = False
    """Put the `REVOKED_RATE` token in the emulator's `used_up_tokens` after a third of the jobs."""

    @property
    def target_per_s(self) -> float:
        """What the tokens it calls with allow together (before any revocation)."""
        return sum(self.rates)

    @property
    def after_revoke_per_s(self) -> float:
        return self.target_per_s - REVOKED_RATE

    def tokens(self, provider: tuple[PoolToken, ...]) -> tuple[PoolToken, ...]:
        return tuple(t for t in provider if t.rate_per_s in self.rates)


def pool_cap_s(jobs: int) -> float:
    """Twice the ideal time of scenario 2 (a third of the jobs at 60/s, the rest at 40/s), plus
    a minute: a pool that works finishes well inside it, one that stalls is stopped."""
    total = sum(TOKEN_RATES)
    ideal_s = jobs * REVOKE_AFTER_SHARE / total + jobs * (1 - REVOKE_AFTER_SHARE) / (
        total - REVOKED_RATE
    )
    return 2 * ideal_s + POOL_CAP_FLOOR_S


def contenders(jobs: int, cap_s: float) -> list[Contender]:
    pool_cap = pool_cap_s(jobs)
    return [
        Contender("pool", "1", jobs, TOKEN_RATES, pool_cap),
        Contender("pool-revoke", "2", jobs, TOKEN_RATES, pool_cap, revoke=True),
        Contender("one-token", "baseline", jobs, (BASELINE_RATE,), cap_s, pool=False),
    ]
