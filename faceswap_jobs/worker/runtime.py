"""The long-lived objects a worker process needs (Redis client, job store, API client), built once.

Built lazily and per process id: a prefork child must not reuse sockets opened by its parent.
"""

from __future__ import annotations

import os
import random
import threading
from dataclasses import dataclass, field

import redis
from celery import Celery

from faceswap_jobs.batches.store import BatchStore
from faceswap_jobs.callbacks.settlement import Settlement, build_settlement
from faceswap_jobs.celery_app import settings_of
from faceswap_jobs.client import FaceSwapClient
from faceswap_jobs.config import Settings
from faceswap_jobs.connections import redis_client
from faceswap_jobs.jobs.parking import ParkingLot
from faceswap_jobs.jobs.store import JobStore, job_store
from faceswap_jobs.jobs.transitions import JobTransitions
from faceswap_jobs.keys import Keys
from faceswap_jobs.limits.pool import TokenPool
from faceswap_jobs.policy import RetryConfig
from faceswap_jobs.worker.leases import LeaseKeeper


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    store: JobStore
    jobs: JobTransitions
    retry: RetryConfig
    limits: TokenPool
    parking: ParkingLot
    settlement: Settlement
    batches: BatchStore
    leases: LeaseKeeper
    rng: random.Random = field(default_factory=random.Random)
    _clients: dict[str, FaceSwapClient] = field(default_factory=dict)
    _clients_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: Settings, app: Celery) -> Runtime:
        client = redis_client(settings)
        store = job_store(settings, client)
        limits = TokenPool(settings, client)
        jobs = JobTransitions(client, store, token_id=limits.members[0].id)
        return cls(
            settings=settings,
            redis=client,
            store=store,
            jobs=jobs,
            retry=RetryConfig.from_settings(settings),
            limits=limits,
            parking=ParkingLot(client, Keys(settings.key_prefix)),
            settlement=build_settlement(settings, client, app),
            batches=BatchStore(client, Keys(settings.key_prefix), settings.job_ttl_s),
            leases=LeaseKeeper(jobs, settings.lease_ttl_s),
        )

    def client_for(self, tid: str) -> FaceSwapClient:
        """The API client that calls with token `tid`, one per token (its own connections)."""
        with self._clients_lock:
            if tid not in self._clients:
                member = self.limits.member(tid)
                if member is None:
                    raise KeyError(f"token {tid} is not in this worker's pool")
                self._clients[tid] = FaceSwapClient(
                    self.settings.swap_url,
                    member.token.token.get_secret_value(),
                    connect_timeout_s=self.settings.connect_timeout_s,
                    read_timeout_s=self.settings.read_timeout_s,
                    pool_size=self.settings.concurrency,
                )
            return self._clients[tid]

    def held_secrets(self) -> list[str]:
        """Every secret this worker holds, to keep out of what it stores and shows."""
        secrets = [m.token.token.get_secret_value() for m in self.limits.members]
        if self.settings.webhook_secret is not None:
            secrets.append(self.settings.webhook_secret.get_secret_value())
        return [s for s in secrets if s]


LEASE_MARGIN_S = 5.0
"""Seconds an in-flight slot outlives a callback wait, so the slot is not freed before it."""

_lock = threading.Lock()
_runtimes: dict[tuple[int, int], Runtime] = {}


def runtime_for(app: Celery) -> Runtime:
    """The runtime of this process for this app, created on first use."""
    key = (os.getpid(), id(app))
    with _lock:
        if key not in _runtimes:
            _runtimes[key] = Runtime.build(settings_of(app), app)
        return _runtimes[key]
