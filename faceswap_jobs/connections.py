"""Redis clients built from settings: one shape for every process that talks to Redis.

Blocking clients share a bounded pool per process, because threads hold a connection only for
a few round trips; the receiver's asyncio client gets the same timeouts.
"""

from __future__ import annotations

import redis
import redis.asyncio

from faceswap_jobs.config import Settings

REDIS_CONNECTIONS = 64
"""Connections per process. Threads hold one only for a few round trips (or a wait of at most a
second), so a pool this size serves thousands of threads; one connection per thread would
cost a socket and its buffers each."""
SOCKET_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
HEALTH_CHECK_INTERVAL_S = 30


def redis_client(settings: Settings) -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=min(REDIS_CONNECTIONS, settings.concurrency + 8),
        timeout=30,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
    )
    return redis.Redis(connection_pool=pool)


def async_redis_client(settings: Settings) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(
        settings.redis_url,
        max_connections=REDIS_CONNECTIONS,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
    )
