"""The in-flight bench's contenders, and the settings every process of ours gets.

One worker process per contender, all running our task through `python -m faceswap_jobs
worker`; what differs is the pool, how many calls it may hold, and callback mode.
"""

from __future__ import annotations

import argparse
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import redis
from rich.progress import Progress

from faceswap_jobs.config import CALLBACK_MODE_THREADS

RATE_PER_S = 20.0
"""Scenario A: what the provider allows and what our limiter is set to."""
SYNC_POOL_IN_FLIGHT = 1600
"""FACESWAP_MAX_IN_FLIGHT for our sync pool: it sizes the worker's threads (one per call)."""
UNBOUNDED_IN_FLIGHT = 20_000
"""FACESWAP_MAX_IN_FLIGHT where the cap must not be the bottleneck."""
CAPACITY_RATE_PER_S = 1000.0
PACKAGE = Path(__file__).resolve().parents[2] / "faceswap_jobs"


@dataclass(frozen=True)
class Contender:
    slug: str
    scenario: Literal["A", "B"]
    mode: Literal["sync", "callback"]
    pool: str
    worker_args: tuple[str, ...]
    workers: int
    """Threads or processes of the one worker process."""
    max_in_flight: int
    jobs: int
    rate_per_s: float
    """Our limiter's rate; the provider enforces the same in A and nothing in B."""
    provider_limited: bool
    cap_s: float | None
    judged: bool
    """Whether completions/s is judged against the limit (not for a single wave)."""
    processes: int = 1
    """Worker processes, each with `workers` threads (B-callback: `--callback-processes`)."""

    def limit_per_s(self, latency_s: float) -> float:
        """min(rate, calls it can hold / latency): a sync call holds a thread (and a slot), a
        callback-mode call only a slot of the in-flight cap."""
        holders = self.max_in_flight
        if self.mode == "sync":
            holders = min(self.workers, self.max_in_flight)
        return min(self.rate_per_s, holders / latency_s)


@dataclass(frozen=True)
class Bench:
    redis_url: str
    token: str
    secret: str
    latency_s: float
    logs: Path
    progress: Progress


def contenders(args: argparse.Namespace) -> list[Contender]:
    a: dict[str, Any] = {"scenario": "A", "jobs": args.jobs, "rate_per_s": RATE_PER_S}
    a |= {"provider_limited": True, "judged": True}
    b: dict[str, Any] = {"scenario": "B", "provider_limited": False}
    prefork, threads = ("--pool", "prefork", "--concurrency", "2"), ("--pool", "threads")
    n = args.callback_processes
    callback_pool = f"callback, {f'{n} x ' if n > 1 else ''}{CALLBACK_MODE_THREADS} thr"
    return [
        Contender("A-prefork", mode="sync", pool="prefork -c 2", worker_args=prefork, workers=2,
                  max_in_flight=UNBOUNDED_IN_FLIGHT, cap_s=args.cap_s, **a),
        Contender("A-threads", mode="sync", pool="threads -c 64",
                  worker_args=(*threads, "--concurrency", "64"), workers=64,
                  max_in_flight=UNBOUNDED_IN_FLIGHT, cap_s=args.cap_s, **a),
        Contender("A-sync", mode="sync", pool=f"sync pool, {SYNC_POOL_IN_FLIGHT} thr",
                  worker_args=(), workers=SYNC_POOL_IN_FLIGHT, max_in_flight=SYNC_POOL_IN_FLIGHT,
                  cap_s=args.fast_cap_s, **a),
        Contender("A-callback", mode="callback",
                  pool=f"callback, {CALLBACK_MODE_THREADS} thr", worker_args=(),
                  workers=CALLBACK_MODE_THREADS, max_in_flight=UNBOUNDED_IN_FLIGHT,
                  cap_s=args.fast_cap_s, **a),
        Contender("B-sync", mode="sync", pool=f"sync pool, {SYNC_POOL_IN_FLIGHT} thr",
                  worker_args=(), workers=SYNC_POOL_IN_FLIGHT, max_in_flight=SYNC_POOL_IN_FLIGHT,
                  jobs=args.capacity_jobs, rate_per_s=CAPACITY_RATE_PER_S, cap_s=None,
                  judged=False, **b),
        Contender("B-callback", mode="callback", pool=callback_pool, worker_args=(),
                  workers=CALLBACK_MODE_THREADS, max_in_flight=UNBOUNDED_IN_FLIGHT,
                  jobs=args.callback_jobs, rate_per_s=args.callback_rate, cap_s=None,
                  judged=True, processes=n, **b),
    ]  # fmt: skip


def our_env(bench: Bench, prefix: str, **extra: str) -> dict[str, str]:
    """What every process of ours gets; time limits nest above the latency as the validator
    requires: read < soft < hard < visibility, and the callback wait outlasts a swap."""
    latency = bench.latency_s
    env = {
        **os.environ,
        "FACESWAP_REDIS_URL": bench.redis_url,
        "FACESWAP_API_TOKEN": bench.token,
        "FACESWAP_KEY_PREFIX": prefix,
        "FACESWAP_WEBHOOK_SECRET": bench.secret,
        "FACESWAP_RATE_BURST": "1",
        "FACESWAP_READ_TIMEOUT_S": f"{latency + 30:g}",
        "FACESWAP_SOFT_TIME_LIMIT_S": f"{latency + 40:g}",
        "FACESWAP_TIME_LIMIT_S": f"{latency + 50:g}",
        "FACESWAP_VISIBILITY_TIMEOUT_S": f"{max(3600.0, latency + 120):g}",
        "FACESWAP_CALLBACK_WAIT_S": f"{latency + 120:g}",
        **extra,
    }
    for name in ("FACESWAP_WORKER_POOL", "FACESWAP_WORKER_CONCURRENCY"):
        env.pop(name, None)  # "the default pool" must mean the default
    if "FACESWAP_CALLBACK_BASE_URL" not in extra:
        env.pop("FACESWAP_CALLBACK_BASE_URL", None)
    return env


def fresh_prefix(redis_url: str, slug: str) -> str:
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    return f"inflight-{slug}-{secrets.token_hex(3)}"
