"""The session's private redis-server and clients of it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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


def redis_dump(decoding: redis.Redis) -> str:
    """Every key and value in the database as text, whatever its type (binary values, such as
    a batch's packed rows, with undecodable bytes escaped)."""
    kwargs = dict(decoding.connection_pool.connection_kwargs, decode_responses=False)
    client = redis.Redis(connection_pool=redis.ConnectionPool(**kwargs))
    parts: list[str] = []
    for key in client.scan_iter("*"):
        kind = client.type(key).decode()
        if kind == "string":
            value: Any = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            value = kind
        parts.append(f"{key.decode(errors='backslashreplace')} {_text(value)}")
    client.close()
    return "\n".join(parts)


def _text(value: Any) -> str:
    """Bytes inside any structure as text, so a secret stored anywhere shows up as itself."""
    if isinstance(value, bytes):
        return value.decode(errors="backslashreplace")
    if isinstance(value, dict):
        return str({_text(k): _text(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return str([_text(v) for v in value])
    return str(value)
