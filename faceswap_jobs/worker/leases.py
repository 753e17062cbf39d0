"""Keeps the per-job leases of this process's running calls alive.

A lease outlives a dead worker by its time to live (`FACESWAP_LEASE_TTL_S`); a live one must
not lose it mid-call, or a redelivered message could call the API for the same job a second
time. One thread per process renews every held lease three times per time to live, so a call
(or a wait for Redis to come back to record its outcome) may last as long as it needs while a
dead worker's job is free again within seconds. While Redis is away the thread tries every
second, and takes a lease back at once if it lapsed meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

from faceswap_jobs.connections import OUTAGE_ERRORS
from faceswap_jobs.jobs.transitions import JobTransitions

log = logging.getLogger(__name__)

RENEWALS_PER_TTL = 3
OUTAGE_PAUSE_S = 1.0


class LeaseKeeper:
    def __init__(self, jobs: JobTransitions, ttl_s: float) -> None:
        self._jobs = jobs
        self.ttl_s = ttl_s
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def held(self, job_id: str, holder: str) -> Iterator[None]:
        """Renew `job_id`'s lease while the block runs; the caller acquired and releases it."""
        with self._lock:
            self._held[job_id] = holder
            if self._thread is None:
                self._thread = threading.Thread(target=self._renew, name="leases", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(job_id, None)

    def _renew(self) -> None:
        pause = self.ttl_s / RENEWALS_PER_TTL
        while True:
            time.sleep(pause)
            with self._lock:
                held = list(self._held.items())
            pause = self.ttl_s / RENEWALS_PER_TTL
            for job_id, holder in held:
                try:
                    if not self._jobs.renew_lease(job_id, holder, self.ttl_s):
                        log.warning("job %s: another worker took its lease mid-call", job_id)
                except OUTAGE_ERRORS:
                    log.warning("job %s: lease not renewed, Redis unreachable", job_id)
                    pause = OUTAGE_PAUSE_S
