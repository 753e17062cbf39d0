"""The long-lived objects one process needs (Redis client, job store, API client), built once.

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
from faceswap_jobs.celery_app import settings_of
from faceswap_jobs.client import FaceSwapClient
from faceswap_jobs.config import Settings
from faceswap_jobs.keys import Keys
from faceswap_jobs.limits import Limits, RateConfig
from faceswap_jobs.parking import ParkingLot
from faceswap_jobs.policy import RetryConfig
from faceswap_jobs.settlement import Settlement
from faceswap_jobs.store import JobStore

REDIS_CONNECTIONS = 64
"""Connections per process. Threads hold one only for a few round trips (or a wait of at most a
second), so a pool this size serves thousands of threads; one connection per thread would
cost a socket and its buffers each."""


def redis_client(settings: Settings) -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=min(REDIS_CONNECTIONS, settings.concurrency + 8),
        timeout=30,
        decode_responses=True,
        socket_timeout=10.0,
        socket_connect_timeout=5.0,
        health_check_interval=30,
    )
    return redis.Redis(connection_pool=pool)


def job_store(settings: Settings, client: redis.Redis) -> JobStore:
    return JobStore(
        client,
        Keys(settings.key_prefix),
        job_ttl_s=settings.job_ttl_s,
        result_ttl_s=settings.result_ttl_s,
    )


def retry_config(settings: Settings) -> RetryConfig:
    return RetryConfig(
        max_attempts=settings.max_attempts,
        deadline_s=settings.deadline_s,
        backoff_base_s=settings.backoff_base_s,
        backoff_cap_s=settings.backoff_cap_s,
        retry_after_cap_s=settings.retry_after_cap_s,
        max_countdown_s=settings.max_countdown_s,
    )


def parking_lot(settings: Settings, client: redis.Redis) -> ParkingLot:
    keys = Keys(settings.key_prefix)
    return ParkingLot(client, keys.parked, keys.paused)


def limits(settings: Settings, client: redis.Redis) -> Limits:
    rate = RateConfig(
        ceiling_per_s=settings.rate_per_s,
        burst=settings.rate_burst,
        floor_per_s=min(settings.rate_floor_per_s, settings.rate_per_s),
        decrease_factor=settings.rate_decrease_factor,
        increase_per_s=settings.rate_increase_per_s,
        pause_base_s=settings.backoff_base_s,
        pause_cap_s=settings.retry_after_cap_s,
        bulk_share=1.0 - settings.interactive_share,
    )
    return Limits(
        client,
        Keys(settings.key_prefix),
        settings.api_token.get_secret_value(),
        rate,
        max_in_flight=settings.max_in_flight,
        lease_ttl_s=settings.lease_ttl_s,
        short_wait_s=settings.short_wait_s,
        rate_wait_s=settings.rate_wait_s,
        probe_lease_s=settings.time_limit_s,
        breaker_cooldown_s=settings.breaker_cooldown_s,
        breaker_max_cooldown_s=settings.breaker_max_cooldown_s,
    )


def settlement(settings: Settings, client: redis.Redis, app: Celery) -> Settlement:
    return Settlement(
        client,
        Keys(settings.key_prefix),
        job_store(settings, client),
        parking_lot(settings, client),
        retry_config(settings),
        app,
        result_ttl_s=settings.result_ttl_s,
        breaker_cooldown_s=settings.breaker_cooldown_s,
        breaker_max_cooldown_s=settings.breaker_max_cooldown_s,
    )


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    store: JobStore
    client: FaceSwapClient
    retry: RetryConfig
    limits: Limits
    parking: ParkingLot
    settlement: Settlement
    batches: BatchStore
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def build(cls, settings: Settings, app: Celery) -> Runtime:
        client = redis_client(settings)
        return cls(
            settings=settings,
            redis=client,
            store=job_store(settings, client),
            client=FaceSwapClient(
                settings.swap_url,
                settings.api_token.get_secret_value(),
                connect_timeout_s=settings.connect_timeout_s,
                read_timeout_s=settings.read_timeout_s,
                pool_size=settings.concurrency,
            ),
            retry=retry_config(settings),
            limits=limits(settings, client),
            parking=parking_lot(settings, client),
            settlement=settlement(settings, client, app),
            batches=BatchStore(client, Keys(settings.key_prefix)),
        )


_lock = threading.Lock()
_runtimes: dict[tuple[int, int], Runtime] = {}


def runtime_for(app: Celery) -> Runtime:
    """The runtime of this process for this app, created on first use."""
    key = (os.getpid(), id(app))
    with _lock:
        if key not in _runtimes:
            _runtimes[key] = Runtime.build(settings_of(app), app)
        return _runtimes[key]
