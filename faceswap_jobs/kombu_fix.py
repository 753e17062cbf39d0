"""Two workarounds for kombu's Redis transport, each of which made a worker exit.

1. A channel whose connection was closed.

When Redis goes away, Celery's consumer releases its broker connection; kombu first forgets
the connection's address (`transport.client = None`), then closes the channel, which tries to
put its unacknowledged messages back and builds a fresh Redis pool from that address:
`AttributeError: 'NoneType' object has no attribute 'hostname'` in `Channel._connparams`.
Celery counts an `AttributeError` as unrecoverable and the worker exits (measured with celery
5.7.0 / kombu 5.7.0 / redis-py 8.1 and 6.4, a few times in every dozen Redis restarts under
load). Raised as the connection error it is, kombu and Celery handle it as designed: the
channel closes, the consumer reconnects. The messages it held stay in the broker's unacked set,
their tasks run on, and the visibility-timeout sweep brings back any that were not finished.

2. A queue item that is not a message envelope. kombu decodes what BRPOP returns and builds its
message without a check: `\xff garbage`, `[1, 2]` or an envelope without `properties` raised
in the consumer (`Unrecoverable error: JSONDecodeError`) and the worker exited; restarted, it
popped the next such item and exited again. Anyone who can LPUSH to a queue could stop every
worker. Such an item now reads as "nothing there" (`queue.Empty`, which kombu's event loop
expects) and is logged once, bounded and escaped. A message body Celery cannot decode is not
kombu's to judge: Celery acknowledges and logs it, and the task ends the job (`worker.task`).
"""

from __future__ import annotations

import base64
import binascii
import logging
from queue import Empty
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.utils.json import loads

log = logging.getLogger(__name__)

_original = kombu_redis.Channel._connparams
_original_deliver = kombu_redis.Transport._deliver
SHOWN_CHARS = 120


def _connparams(self: kombu_redis.Channel, asynchronous: bool = False) -> Any:
    if self.connection is None or self.connection.client is None:
        raise redis.exceptions.ConnectionError("this broker channel's connection is closed")
    return _original(self, asynchronous)


class UnreadableItem(Empty):
    """A queue item that is no message: to kombu's loop, an empty read."""


def checked_loads(text: str) -> Any:
    """kombu's `loads` for the Redis transport: text that is no JSON is an empty read."""
    try:
        return loads(text)
    except (ValueError, RecursionError):
        _dropped(text)
        raise UnreadableItem() from None


def checked_deliver(self: kombu_redis.Transport, message: Any, queue: str) -> None:
    """What kombu read from a queue must be an envelope `Message` can be built from."""
    if not (isinstance(message, dict) and _is_envelope(message)):
        _dropped(message)
        raise UnreadableItem()
    _original_deliver(self, message, queue)


def _dropped(item: Any) -> None:
    log.warning("dropped a queue item that is not a message: %r", str(item)[:SHOWN_CHARS])


def _is_envelope(payload: dict[str, Any]) -> bool:
    properties = payload.get("properties")
    if not isinstance(properties, dict) or not isinstance(properties.get("delivery_tag"), str):
        return False
    if not isinstance(properties.get("delivery_info", {}), dict):
        return False
    if not isinstance(payload.get("headers") or {}, dict):
        return False
    body, encoding = payload.get("body"), properties.get("body_encoding")
    if encoding == "base64":
        if not isinstance(body, str):
            return False
        try:
            base64.b64decode(body, validate=True)
        except (ValueError, binascii.Error):
            return False
    return encoding in (None, "base64") and isinstance(body, str | None)


def apply() -> None:
    """Install the workarounds (idempotent); a kombu that fixed either is unaffected by them."""
    kombu_redis.Channel._connparams = _connparams  # type: ignore[method-assign]
    kombu_redis.loads = checked_loads  # type: ignore[assignment]
    kombu_redis.Transport._deliver = checked_deliver  # type: ignore[method-assign,assignment]
