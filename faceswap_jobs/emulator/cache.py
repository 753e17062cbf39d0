"""A small async LRU that also shares computations in flight.

When a thousand calls arrive at once with the same sample URLs, the first one decodes (or
composes) and the other 999 await the same task instead of doing the work again.
"""

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class AsyncLru(Generic[K, V]):
    """Up to `max_entries` results by key; a failed computation is not cached."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[K, asyncio.Task[V]] = OrderedDict()

    async def get(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        """The cached value for `key`, computing it once if absent.

        Waiters are shielded so that one cancelled caller (a client that hung up) does not
        cancel the shared computation under everyone else.
        """
        task = self._entries.get(key)
        if task is None:
            task = asyncio.ensure_future(compute())
            self._entries[key] = task
            task.add_done_callback(lambda done: self._forget_failure(key, done))
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return await asyncio.shield(task)

    def _forget_failure(self, key: K, done: asyncio.Task[V]) -> None:
        failed = done.cancelled() or done.exception() is not None
        if failed and self._entries.get(key) is done:
            del self._entries[key]

    def clear(self) -> None:
        """Forget every entry (computations in flight still finish for their waiters)."""
        self._entries.clear()
