"""The session's private redis-server and clients of it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from faceswap_jobs.ops.sandbox import private_redis


@contextmanager
def private_redis_url() -> Iterator[str]:
    """The URL of a redis-server of our own, which runs until exit; fails the test without one."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: run `make test`, which installs it")
    with private_redis() as url:
        yield url


@contextmanager
def decoded_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client answering `str`, closed on exit."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()
