"""Counting the callbacks the receiver turns away at the door (unsigned, forged, expired, bad body).

A flood of forged posts must cost the receiver next to nothing and must not wait on Redis, so
each refusal is a counter bump in memory; a background task adds the counts to the stats hash
(`callbacks:refused:<why>`, next to the refusals `END_ATTEMPT` counts) once a second, and keeps
them for the next flush while Redis is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

import redis
import redis.asyncio

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 1.0
STOP_FLUSH_S = 2.0


class RefusalTally:
    def __init__(self, client: redis.asyncio.Redis, stats_key: str) -> None:
        self._r, self._key = client, stats_key
        self._counts: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    def count(self, why: str) -> None:
        self._counts[why] += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="refusal-tally")

    async def stop(self) -> None:
        """Flush what was counted, then stop (the receiver shutting down)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), STOP_FLUSH_S)

    async def flush(self) -> None:
        counts, self._counts = self._counts, Counter()
        if not counts:
            return
        try:
            async with self._r.pipeline(transaction=False) as pipe:
                for why, n in counts.items():
                    pipe.hincrby(self._key, f"callbacks:refused:{why}", n)
                await pipe.execute()
        except (OSError, redis.RedisError) as exc:
            self._counts.update(counts)
            log.debug("refused callbacks not counted yet, Redis unavailable: %s", exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            await self.flush()
