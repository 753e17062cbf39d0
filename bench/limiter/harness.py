"""What every contender's run shares: a clean emulator and Redis, our workers, the wait loop."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rich.progress import Progress

from bench.common.ours import Ours, worker_argvs
from bench.common.stack import Emulator, workers
from bench.common.trackers import JobRecordTracker
from bench.limiter.contenders import Contender

POLL_S = 0.25
SOURCE, TARGET = "astronaut.png", "chelsea.png"


@dataclass(frozen=True)
class Bench:
    redis_url: str
    emulator: Emulator
    token: str
    logs: Path
    progress: Progress
    cap_s: float


def prepare(bench: Bench, contender: Contender) -> None:
    """A clean start: every emulator setting written back, its ledger emptied, Redis flushed."""
    bench.emulator.reset(**contender.provider())
    with redis.Redis.from_url(bench.redis_url) as client:
        client.flushdb()


@contextlib.contextmanager
def ours_workers(bench: Bench, contender: Contender) -> Iterator[Ours]:
    """`contender.instances` of our workers x `contender.concurrency` threads, on a fresh key
    prefix (so our limiter's state starts clean), answering pings; stopped on the way out."""
    ours = Ours.fresh(bench.redis_url, contender.name)
    env = {
        **os.environ,
        "FACESWAP_REDIS_URL": bench.redis_url,
        "FACESWAP_API_BASE_URL": bench.emulator.base_url,
        "FACESWAP_API_TOKEN": bench.token,
        "FACESWAP_KEY_PREFIX": ours.prefix,
        "FACESWAP_RATE_PER_S": contender.setting,
        "FACESWAP_RATE_BURST": str(contender.burst),
        "FACESWAP_BACKOFF_BASE_S": "0.5",
    }
    if contender.deadline_s is not None:
        env["FACESWAP_DEADLINE_S"] = f"{contender.deadline_s:g}"
    argvs = worker_argvs("ours", contender.instances, contender.concurrency)
    with workers(contender.name, argvs, env, ours.producer.app, bench.logs):
        yield ours


@dataclass(frozen=True)
class Submitted:
    task: Any
    """The contender's progress bar."""
    t0_s: float
    ids: list[str]
    tracker: JobRecordTracker


def submit_numbered(bench: Bench, ours: Ours, contender: Contender) -> Submitted:
    """The contender's jobs, source URLs numbered `?i=N` so ledger calls map to jobs."""
    task = bench.progress.add_task(contender.name, total=contender.jobs)
    source, target = sources(bench)
    t0_s = time.time()
    ids = [ours.producer.submit_swap(f"{source}?i={i}", target).id for i in range(contender.jobs)]
    return Submitted(task, t0_s, ids, JobRecordTracker(ours.producer.redis, ours.keys, ids))


def sources(bench: Bench) -> tuple[str, str]:
    return bench.emulator.sample(SOURCE), bench.emulator.sample(TARGET)


def drain(
    bench: Bench,
    task: Any,
    done: Callable[[], int],
    total: int,
    t0_s: float,
    on_poll: Callable[[], None] | None = None,
    cap_s: float | None = None,
) -> bool:
    """Poll until `done()` reaches `total` (False) or the cap passed (True: capped)."""
    cap_s = bench.cap_s if cap_s is None else cap_s
    while True:
        if on_poll is not None:
            on_poll()
        count = done()
        bench.progress.update(task, completed=count)
        if count >= total:
            return False
        if time.time() - t0_s >= cap_s:
            return True
        time.sleep(POLL_S)
