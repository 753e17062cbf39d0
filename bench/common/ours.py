"""Our side of a contender's run: a producer on a key prefix of its own, and our workers'
command lines."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from faceswap_jobs.config import Settings
from faceswap_jobs.keys import Keys
from faceswap_jobs.ops.sandbox import python_module
from faceswap_jobs.producer.submit import Producer


@dataclass(frozen=True)
class Ours:
    """Our side of a contender: the producer to submit with, and the key prefix its workers use."""

    producer: Producer
    prefix: str

    @classmethod
    def fresh(cls, redis_url: str, name: str) -> Ours:
        """A producer on a fresh key prefix for contender `name`, so no limiter state is
        inherited from an earlier contender."""
        prefix = f"bench-{name}-{secrets.token_hex(3)}"
        return cls(Producer(Settings(redis_url=redis_url, key_prefix=prefix)), prefix)

    @property
    def keys(self) -> Keys:
        return Keys(self.prefix)


def worker_argvs(node: str, instances: int, concurrency: int) -> dict[str, list[str]]:
    """`instances` of our workers x `concurrency` threads, named `{node}1`, `{node}2`, ...: the
    names `bench.common.stack.workers` pings them by."""
    return {
        f"{node}{i}": python_module(
            "faceswap_jobs", "worker", "--concurrency", str(concurrency), f"--hostname={node}{i}@%h"
        )
        for i in range(1, instances + 1)
    }
