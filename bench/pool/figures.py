"""Figures from the emulator's ledger, per token and around the revocation: pure functions, no
I/O, no clock.

Every call figure is the provider's view: the ledger names each call's token by its hash (the
same sha256[:16] the workers use as the token's id), so the split between tokens is what the
provider billed, not what the workers believe they sent.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from bench.common import analysis
from bench.pool.contenders import SETTLE_S, PoolToken

USED_UP = "used_up"
"""Ledger outcome of a call with a token the provider has revoked (403 used_up)."""


def calls_of(
    entries: Sequence[Mapping[str, Any]], token_hash: str | None = None
) -> list[analysis.Call]:
    """The ledger's calls, oldest first; only one token's when `token_hash` is given."""
    chosen = [e for e in entries if token_hash is None or e.get("token_hash") == token_hash]
    return analysis.calls_from_ledger(chosen)


def totals(
    entries: Sequence[Mapping[str, Any]], t0_s: float, target_per_s: float
) -> dict[str, Any]:
    """Every call of the run: outcomes, successes per second over the busy period (first call
    to last) and against what the contender's tokens allow together."""
    calls = calls_of(entries)
    stats = analysis.call_stats(calls)
    return {
        "calls": stats.calls,
        "successes": stats.successes,
        "rate_limited": stats.rate_limited,
        "rate_limited_share": stats.rate_limited_share,
        "outcomes": dict(Counter(c.outcome for c in calls)),
        "busy_s": stats.busy_s,
        "successes_per_s": stats.success_rate_per_s,
        "achieved_over_target": stats.success_rate_per_s / target_per_s,
        "max_calls_1s": stats.max_calls_1s,
        "per_second": analysis.per_second(calls, t0_s).to_json(),
    }


def per_token(
    entries: Sequence[Mapping[str, Any]], tokens: Sequence[PoolToken], t0_s: float
) -> list[dict[str, Any]]:
    """Each provider token's share of the run: its calls by outcome, its busiest second against
    its own limit, and its calls per second since the first submit (a series per token)."""
    rows = []
    for token in tokens:
        calls = calls_of(entries, token.hash)
        stats = analysis.call_stats(calls)
        rows.append({
            "token_hash": token.hash,
            "label": token.label,
            "rate_per_s": token.rate_per_s,
            "calls": stats.calls,
            "successes": stats.successes,
            "rate_limited": stats.rate_limited,
            "used_up": sum(c.outcome == USED_UP for c in calls),
            "max_calls_1s": stats.max_calls_1s,
            "calls_per_second": _series(calls, t0_s),
        })  # fmt: skip
    return rows


def _series(calls: Sequence[analysis.Call], t0_s: float) -> list[int]:
    """Calls (any outcome) per whole second since `t0_s`; index s covers [s, s + 1)."""
    series = [0] * (math.floor(calls[-1].time_s - t0_s) + 1 if calls else 0)
    for call in calls:
        series[max(0, math.floor(call.time_s - t0_s))] += 1
    return series


def after_revocation(
    entries: Sequence[Mapping[str, Any]],
    revoked: PoolToken,
    revoked_at_s: float,
    t0_s: float,
    remaining_per_s: float,
) -> dict[str, Any]:
    """Scenario 2 once the token is revoked: successes per second from `SETTLE_S` after the
    revocation to the last call (the steady part: the pool has found out by then), against what
    the remaining tokens allow; and how many calls still went to the revoked token, until when."""
    calls = calls_of(entries)
    settled_s = revoked_at_s + SETTLE_S
    rate = analysis.success_rate_after(calls, settled_s)
    late = [c for c in calls_of(entries, revoked.hash) if c.time_s >= revoked_at_s]
    after = [c for c in calls if c.time_s >= settled_s]
    return {
        "revoked_token_hash": revoked.hash,
        "revoked_at_s": revoked_at_s - t0_s,
        "settle_s": SETTLE_S,
        "successes_before": sum(
            c.outcome == analysis.SUCCESS for c in calls if c.time_s < revoked_at_s
        ),
        "successes_per_s_after": rate,
        "after_over_remaining": None if rate is None else rate / remaining_per_s,
        "rate_limited_share_after": analysis.rate_limited_share_after(calls, settled_s),
        "calls_after": len(after),
        "revoked_calls_after": len(late),
        "revoked_outcomes_after": dict(Counter(c.outcome for c in late)),
        "last_revoked_call_after_s": late[-1].time_s - revoked_at_s if late else None,
    }
