"""Delivering callback POSTs with the delay, reordering, loss and duplication a receiver must bear.

The vendor documents no retries and no signature for callbacks, so there are none: a delivery
that fails is recorded and forgotten, exactly the case a client must survive.
"""

import asyncio
import random
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from .outbound import OutboundHttp

CALLBACK_TIMEOUT_S = 10.0
"""Timeout of each callback POST."""

MAX_DELIVERIES = 100_000
"""Oldest delivery records are dropped beyond this."""


@dataclass(frozen=True)
class CallbackPolicy:
    """How callbacks misbehave; `delay_s` is already scaled to wall seconds."""

    delay_s: float
    jitter_s: float
    """Upper bound of a random extra delay, so callbacks arrive out of order."""
    loss: float
    duplicate: float


@dataclass(frozen=True)
class Delivery:
    """One delivery attempt (or one decided loss) as served by `GET /_emulator/callbacks`."""

    time: float
    task_id: str
    url: str
    success: bool
    trace_id: str | None
    status: int | None
    error: str | None
    duplicate: bool
    lost: bool


class CallbackLog:
    """Every delivery attempt, in order."""

    def __init__(self) -> None:
        self._deliveries: deque[Delivery] = deque(maxlen=MAX_DELIVERIES)

    def record(self, delivery: Delivery) -> None:
        """Append one attempt."""
        self._deliveries.append(delivery)

    def to_json(self) -> list[dict[str, Any]]:
        """All attempts as JSON objects."""
        return [asdict(delivery) for delivery in self._deliveries]

    def clear(self) -> None:
        """Forget every attempt."""
        self._deliveries.clear()


async def _post(
    outbound: OutboundHttp, url: str, payload: dict[str, Any]
) -> tuple[int | None, str | None]:
    try:
        async with outbound.callback_slot() as client:
            response = await client.post(url, json=payload, timeout=CALLBACK_TIMEOUT_S)
    except Exception as exc:
        # Any failure to deliver is recorded the same way: the receiver did not get it.
        return None, f"{type(exc).__name__}: {exc}"[:300]
    return response.status_code, None


async def deliver_callback(
    outbound: OutboundHttp,
    log: CallbackLog,
    rng: random.Random,
    policy: CallbackPolicy,
    url: str,
    payload: dict[str, Any],
) -> None:
    """Wait, then POST `payload` to `url` once, twice (duplicate) or not at all (loss)."""
    await asyncio.sleep(policy.delay_s + rng.uniform(0.0, policy.jitter_s))

    def record(status: int | None, error: str | None, *, duplicate: bool, lost: bool) -> None:
        log.record(
            Delivery(
                time=time.time(),
                task_id=str(payload.get("task_id")),
                url=url,
                success=bool(payload.get("success")),
                trace_id=payload.get("trace_id"),
                status=status,
                error=error,
                duplicate=duplicate,
                lost=lost,
            )
        )

    lost = rng.random() < policy.loss
    duplicated = rng.random() < policy.duplicate
    if lost:
        record(None, None, duplicate=False, lost=True)
        return
    for duplicate in (False, True) if duplicated else (False,):
        status, error = await _post(outbound, url, payload)
        record(status, error, duplicate=duplicate, lost=False)
