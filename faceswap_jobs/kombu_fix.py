"""A workaround for kombu's Redis transport dying on a channel whose connection was closed.

When Redis goes away, Celery's consumer releases its broker connection; kombu first forgets
the connection's address (`transport.client = None`), then closes the channel, which tries to
put its unacknowledged messages back and builds a fresh Redis pool from that address:
`AttributeError: 'NoneType' object has no attribute 'hostname'` in `Channel._connparams`.
Celery counts an `AttributeError` as unrecoverable and the worker exits (measured with celery
5.7.0 / kombu 5.7.0 / redis-py 8.1 and 6.4, a few times in every dozen Redis restarts under
load). Raised as the connection error it is, kombu and Celery handle it as designed: the
channel closes, the consumer reconnects. The messages it held stay in the broker's unacked set,
their tasks run on, and the visibility-timeout sweep brings back any that were not finished.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis

_original = kombu_redis.Channel._connparams


def _connparams(self: kombu_redis.Channel, asynchronous: bool = False) -> Any:
    if self.connection is None or self.connection.client is None:
        raise redis.exceptions.ConnectionError("this broker channel's connection is closed")
    return _original(self, asynchronous)


def apply() -> None:
    """Install the workaround (idempotent); a kombu that fixed the bug is unaffected by it."""
    kombu_redis.Channel._connparams = _connparams  # type: ignore[method-assign]
