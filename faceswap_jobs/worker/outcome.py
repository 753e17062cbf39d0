"""Writing what a call did, even when Redis is away at that moment.

A call that reached the API may be billed; dropping its outcome because Redis was restarting
would leave the job `running` until its message came back, and then call it again. So the
writes after a call are retried in the worker, for longer than any one command retries on its
own, and the message is acknowledged only once they went through. Each write checks the state
it moves from, so a write repeated after a lost reply changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from faceswap_jobs.connections import OUTAGE_ERRORS

log = logging.getLogger(__name__)

T = TypeVar("T")

OUTCOME_PATIENCE_S = 600.0
"""How long a worker holds a call's outcome waiting for Redis before it gives up on it (the
message then comes back after the visibility timeout, and the job's call shows `interrupted`)."""
PAUSE_S = 1.0


def recorded(write: Callable[[], T]) -> T:
    """`write()`, tried again while Redis is unreachable, for up to `OUTCOME_PATIENCE_S`."""
    deadline = time.monotonic() + OUTCOME_PATIENCE_S
    while True:
        try:
            return write()
        except OUTAGE_ERRORS as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("Redis unreachable (%s); holding a call's outcome", type(exc).__name__)
            time.sleep(PAUSE_S)
