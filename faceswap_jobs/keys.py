"""Every Redis key name this package uses, under one prefix.

Celery's own keys (queues named in `Settings`, `celery-task-meta-*`, `unacked*`) are not listed:
Celery names them. Everything we write lives under `{prefix}:`, so one `SCAN` finds it all.
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

    @property
    def dead_letters(self) -> str:
        """Sorted set of failed job ids scored by failure time (the dead-letter queue)."""
        return f"{self.prefix}:dlq"
