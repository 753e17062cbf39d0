"""Every Redis key name this package uses, under one prefix.

Celery's own keys (queues named in `Settings`, `celery-task-meta-*`, `unacked*`) are not listed:
Celery names them. Everything we write lives under `{prefix}:`, so one `SCAN` finds it all.
Limiter keys carry a hash of the API token (`token_id`), never the token.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "faceswap"

    def job(self, job_id: str) -> str:
        """Hash: the job record (state, request, counters, result, last error)."""
        return f"{self.prefix}:job:{job_id}"

    def history(self, job_id: str) -> str:
        """List of JSON attempts, oldest first; expires with the job."""
        return f"{self.prefix}:job:{job_id}:history"

    def lease(self, job_id: str) -> str:
        """String: who is calling the API for this job now; expires after the hard time limit."""
        return f"{self.prefix}:job:{job_id}:lease"

    def rate(self, token_id: str) -> str:
        """Hash: GCRA state, effective rate and pause of one API token."""
        return f"{self.prefix}:rl:{token_id}"

    def rate_sent(self, token_id: str) -> str:
        """Sorted set: the calls the last check let go in the current window (score: time)."""
        return f"{self.prefix}:rl:{token_id}:sent"

    def limits_config(self, token_id: str) -> str:
        """Hash: the limits the workers enforce for a token (ceiling, burst, in-flight cap), as
        they last published them, so every reader shows those and not its own settings."""
        return f"{self.prefix}:rl:{token_id}:config"

    def bulk_rate(self, token_id: str) -> str:
        """Hash: the GCRA state of the share of the rate that bulk work may use."""
        return f"{self.prefix}:rl:{token_id}:bulk"

    def inflight(self, token_id: str) -> str:
        """Sorted set: in-flight call leases, scored by expiry."""
        return f"{self.prefix}:inflight:{token_id}"

    def inflight_wake(self, token_id: str) -> str:
        """List: one entry per released slot, to wake a blocked waiter (`RELEASE_SLOT_LUA` derives
        it from `inflight` the same way)."""
        return f"{self.prefix}:inflight:{token_id}:wake"

    def tokens_retired(self) -> str:
        """Set of token ids an operator took out of service (`faceswap-jobs tokens retire`):
        no worker starts a call with them until `tokens restore`. Kept without expiry, like a
        budget's cap: an operator's decision does not lapse."""
        return f"{self.prefix}:tokens:retired"

    def tokens_seen(self) -> str:
        """Sorted set of token ids a worker holds, scored by when one last said so (Redis
        time): how operator commands learn the pool without holding a token. It expires a
        minute after the last worker said so."""
        return f"{self.prefix}:tokens:seen"

    def breaker(self, token_id: str) -> str:
        """Hash: the token's circuit breaker (state, reason, cool-down)."""
        return f"{self.prefix}:breaker:{token_id}"

    @property
    def parked(self) -> str:
        """Sorted set of job ids waiting for a time (score: due, on Redis time)."""
        return f"{self.prefix}:parked"

    @property
    def paused(self) -> str:
        """Sorted set of job ids waiting for a breaker to close (score: when paused)."""
        return f"{self.prefix}:paused"

    @property
    def awaiting_callback(self) -> str:
        """Sorted set of job ids waiting for a callback, scored by when to give up on it."""
        return f"{self.prefix}:callbacks:waiting"

    @property
    def unclaimed(self) -> str:
        """Sorted set of job ids whose message was sent and no worker has taken yet (score: when
        sent): a message Redis lost in a crash (popped, never delivered) shows up here."""
        return f"{self.prefix}:unclaimed"

    @property
    def stats(self) -> str:
        """Hash of counters every worker increments (calls by outcome, jobs by end state)."""
        return f"{self.prefix}:stats"

    def spend_day(self, day: str) -> str:
        """Hash: one UTC day's ended calls, `token|queue|measure` -> count (`jobs.spend`)."""
        return f"{self.prefix}:spend:day:{day}"

    @property
    def spend_billed(self) -> str:
        """Hash: billed and possibly billed calls ever, `billed:token:queue` -> count."""
        return f"{self.prefix}:spend:billed"

    @property
    def spend_days(self) -> str:
        """Sorted set of the days that have a `spend_day` hash (score: the day's number)."""
        return f"{self.prefix}:spend:days"

    @property
    def dead_letters(self) -> str:
        """Sorted set of failed job ids scored by failure time (the dead-letter queue)."""
        return f"{self.prefix}:dlq"

    def batch(self, name: str) -> str:
        """Hash: a batch's counters (rows, enqueued, started, succeeded...), source and cursor.
        Settle scripts derive it from `batch("")` + name."""
        return f"{self.prefix}:batch:{name}"

    def batch_rows(self, name: str, segment: int) -> str:
        """String: packed (job id, line) of 2**20 rows of a batch, in input order."""
        return f"{self.prefix}:batch:{name}:rows:{segment}"

    def batch_rejects(self, name: str) -> str:
        """Hash: row position -> why that row was rejected."""
        return f"{self.prefix}:batch:{name}:rejects"

    def batch_ids(self, name: str) -> str:
        """Hash: the `id` of each row that gave one -> a fingerprint of its request and its line,
        so a later row reusing the `id` for a different request is refused."""
        return f"{self.prefix}:batch:{name}:ids"

    def batch_lock(self, name: str) -> str:
        """String: held by the one backfill enqueueing into a batch."""
        return f"{self.prefix}:batch:{name}:lock"

    @property
    def batch_index(self) -> str:
        """Sorted set of batch names by creation time."""
        return f"{self.prefix}:batches"

    @property
    def budget_caps(self) -> str:
        """Hash: budget scope (`day`, `day:YYYY-MM-DD`, `queue:NAME`, `batch:NAME`) -> its cap in
        calls; a scope not in it is unlimited."""
        return f"{self.prefix}:budget:caps"

    def budget_spent(self, scope: str) -> str:
        """Hash: the calls charged to a budget scope (`calls`; a day is `day:YYYY-MM-DD`, never
        `day`) and the cap whose soft threshold was announced (`warned`), so it is once. Expires
        a job lifetime after its last charge. The budget scripts derive it from
        `budget_spent("")` + scope."""
        return f"{self.prefix}:budget:spent:{scope}"

    @property
    def budget_waiting_scopes(self) -> str:
        """Set of budget scopes that have jobs waiting for room."""
        return f"{self.prefix}:budget:waiting"

    def budget_waiting(self, scope: str) -> str:
        """Sorted set of job ids paused until `scope` has room (score: when paused). The release
        script derives it from `budget_waiting("")` + scope."""
        return f"{self.prefix}:budget:waiting:{scope}"
