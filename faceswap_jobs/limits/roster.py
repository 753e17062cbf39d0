"""The token pool as operator commands see it, without holding a token.

Workers say which tokens they hold (`TokenPool.publish`: a sorted set of token ids and each
token's published limits); `limits`, `tokens`, `pause`, `resume`, the metrics and the dry-run
estimate read them here. With no worker publishing, the reader's own settings name the tokens
(`FACESWAP_TOKEN_ID`, or the hashes of the tokens it holds).
"""

from __future__ import annotations

import redis

from faceswap_jobs.config import PoolToken, Settings
from faceswap_jobs.keys import Keys
from faceswap_jobs.limits import Limits, LimitsSnapshot
from faceswap_jobs.limits.budget import Budget
from faceswap_jobs.limits.pool import SEEN_TTL_S


class Roster:
    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings, self._r = settings, client
        self._keys = Keys(settings.key_prefix)
        self.budget = Budget(client, self._keys, settings.budget_warn_share, settings.job_ttl_s)

    def token_ids(self) -> list[str]:
        """Tokens a worker held within the last minute, retired ones included, in id order;
        else the ones this shell's settings name."""
        seconds, _ = self._r.time()
        seen = self._r.zrangebyscore(self._keys.tokens_seen(), seconds - SEEN_TTL_S, "+inf")
        retired = self._r.smembers(self._keys.tokens_retired())
        held = set(seen) | set(retired)
        return sorted(held) if held else self._own_ids()

    def _own_ids(self) -> list[str]:
        if self.settings.token_id is not None:
            return [self.settings.token_id]
        return list(self._own_tokens()) or [Limits.from_settings(self.settings, self._r).token_id]

    def _own_tokens(self) -> dict[str, PoolToken]:
        try:
            return {token.id: token for token in self.settings.token_pool()}
        except ValueError:
            return {}

    def limits(self, tid: str) -> Limits:
        """The token's limits: as the workers publish them (`snapshot`), else as this shell's
        settings give them (its own pool's entry for the token, when it holds one)."""
        own = self._own_tokens().get(tid)
        if own is not None:
            return Limits.from_settings(self.settings, self._r, own)
        return Limits.from_settings(self.settings, self._r, tid=tid)

    def snapshots(self) -> list[LimitsSnapshot]:
        return [self.limits(tid).snapshot() for tid in self.token_ids()]

    def retire(self, tid: str) -> bool:
        """Take a token out of service: no worker starts a call with it (its calls in flight
        end as they would). True when it was in service."""
        return bool(self._r.sadd(self._keys.tokens_retired(), tid))

    def restore(self, tid: str) -> bool:
        """Put a retired token back in service; True when it was retired."""
        return bool(self._r.srem(self._keys.tokens_retired(), tid))

    def combined_ceiling(self) -> tuple[float, int, bool]:
        """(calls/s, tokens, published): the sum of the ceilings of the tokens in service whose
        breaker is closed, as the workers publish them (published False: this shell's settings,
        no worker having published)."""
        snaps = [s for s in self.snapshots() if not s.retired and s.breaker.closed]
        return sum(s.ceiling_per_s for s in snaps), len(snaps), any(s.published for s in snaps)
