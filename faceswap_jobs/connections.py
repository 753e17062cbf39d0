"""Redis clients built from settings: one shape for every process that talks to Redis.

Blocking clients share a bounded pool per process, because threads hold a connection only for
a few round trips; the receiver's asyncio client gets the same timeouts. Every client rides
through a Redis restart: a command that meets a lost connection reconnects and tries again
with a growing pause, for `redis_retry_s` seconds in all, and only then fails with
`ServiceUnavailableError`. Our writes are safe to repeat (each script checks the state it moves
from), so a command whose reply was lost to the restart does no harm when sent again.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.asyncio.retry
from kombu.exceptions import OperationalError
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from faceswap_jobs.config import Settings
from faceswap_jobs.errors import ServiceUnavailableError

T = TypeVar("T")

REDIS_CONNECTIONS = 64
"""Connections per process. Threads hold one only for a few round trips (or a wait of at most a
second), so a pool this size serves thousands of threads; one connection per thread would
cost a socket and its buffers each."""
SOCKET_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
HEALTH_CHECK_INTERVAL_S = 30
BACKOFF = {"base": 0.05, "cap": 1.0}
"""Pauses between tries: 50 ms doubling to 1 s, so a restart is noticed within a second."""
OUTAGE_ERRORS = (RedisConnectionError, RedisTimeoutError, socket.timeout, ConnectionError)
"""A lost or refused connection, or Redis still loading its data (`BusyLoadingError` is a
`ConnectionError`): everything a restart looks like."""


class OutageRetry(Retry):
    """redis-py's retry, bounded by time rather than by count: a restart takes seconds whatever
    the number of tries, and a count would end a long one early or a refused one late."""

    def __init__(self, budget_s: float) -> None:
        super().__init__(ExponentialBackoff(**BACKOFF), retries=-1, supported_errors=OUTAGE_ERRORS)
        self.budget_s = budget_s

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        within = _within(time.monotonic() + self.budget_s, is_retryable)
        return super().call_with_retry(do, fail, within, with_failure_count)


class AsyncOutageRetry(redis.asyncio.retry.Retry):
    """`OutageRetry` for the receiver's asyncio client."""

    def __init__(self, budget_s: float) -> None:
        super().__init__(ExponentialBackoff(**BACKOFF), retries=-1, supported_errors=OUTAGE_ERRORS)
        self.budget_s = budget_s

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        within = _within(time.monotonic() + self.budget_s, is_retryable)
        return await super().call_with_retry(do, fail, within, with_failure_count)


def _within(
    deadline: float, is_retryable: Callable[[Exception], bool] | None
) -> Callable[[Exception], bool]:
    def retryable(error: Exception) -> bool:
        return time.monotonic() < deadline and (is_retryable is None or is_retryable(error))

    return retryable


def redis_client(settings: Settings, *, retry_s: float | None = None) -> redis.Redis:
    """A blocking client; `retry_s` overrides the settings' retry budget (the CLI waits less)."""
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=min(REDIS_CONNECTIONS, settings.concurrency + 8),
        timeout=30,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=OutageRetry(settings.redis_retry_s if retry_s is None else retry_s),
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
        retry=AsyncOutageRetry(settings.redis_retry_s),
    )


def redis_address(redis_url: str) -> str:
    """The URL without its password or username: safe for a log line or an error message."""
    parts = urlsplit(redis_url)
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path or '/0'}"


def unavailable(redis_url: str, error: Exception) -> ServiceUnavailableError:
    """The one error every process raises when Redis stayed away past the retry budget."""
    reason = str(error).replace(redis_url, redis_address(redis_url))
    return ServiceUnavailableError(
        f"cannot reach Redis at {redis_address(redis_url)}: {reason}", None, "redis_unavailable"
    )


@contextlib.contextmanager
def reaching_redis(redis_url: str) -> Iterator[None]:
    """Turn Redis (or the broker on it) staying away past every retry into
    `ServiceUnavailableError`, for callers who should not need to know redis-py or kombu."""
    try:
        yield
    except (*OUTAGE_ERRORS, OperationalError) as exc:
        raise unavailable(redis_url, exc) from None
