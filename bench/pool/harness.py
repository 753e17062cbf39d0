"""What every contender's run shares: a clean emulator and Redis, our workers with their tokens,
the wait loop, and the revocation of scenario 2 in the middle of it."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis
from rich.progress import Progress

from bench.common.ours import Ours, worker_argvs
from bench.common.stack import Emulator, workers
from bench.common.trackers import JobRecordTracker, Tally
from bench.pool.contenders import REVOKE_AFTER_SHARE, REVOKED_RATE, Contender, PoolToken

POLL_S = 0.5
"""Between looks at the job records: 6,000 pending jobs are one pipelined read each time, and
the workers being measured share the machine's two cores with it."""
SOURCE, TARGET = "astronaut.png", "chelsea.png"
TOKEN_SETTINGS = (
    "FACESWAP_API_TOKEN",
    "FACESWAP_API_TOKENS",
    "FACESWAP_API_TOKENS_FILE",
    "FACESWAP_TOKEN_ID",
    "FACESWAP_RATE_PER_S",
)
"""Settings the bench sets itself per contender, never inherited from its own environment
(the workers refuse two sources of tokens)."""


@dataclass(frozen=True)
class Bench:
    redis_url: str
    emulator: Emulator
    tokens: tuple[PoolToken, ...]
    logs: Path
    progress: Progress
    instances: int
    concurrency: int


def prepare(bench: Bench) -> None:
    """A clean start: every token at its own rate and none revoked, ledger emptied, Redis
    flushed. `rate_per_s` None: a token the provider does not know stays unlimited (none is)."""
    bench.emulator.reset(
        rate_per_s=None,
        token_rates={t.token: t.rate_per_s for t in bench.tokens},
        used_up_tokens=(),
    )
    with redis.Redis.from_url(bench.redis_url) as client:
        client.flushdb()


def worker_env(bench: Bench, contender: Contender, prefix: str) -> dict[str, str]:
    """Our settings for this contender: its tokens (a pool, or the one token and its rate)."""
    env = {k: v for k, v in os.environ.items() if k not in TOKEN_SETTINGS}
    env |= {
        "FACESWAP_REDIS_URL": bench.redis_url,
        "FACESWAP_API_BASE_URL": bench.emulator.base_url,
        "FACESWAP_KEY_PREFIX": prefix,
        "FACESWAP_BACKOFF_BASE_S": "0.5",
    }
    tokens = contender.tokens(bench.tokens)
    if contender.pool:
        pool = [{"token": t.token, "rate_per_s": t.rate_per_s} for t in tokens]
        env["FACESWAP_API_TOKENS"] = json.dumps(pool)
    else:
        (token,) = tokens
        env["FACESWAP_API_TOKEN"] = token.token
        env["FACESWAP_RATE_PER_S"] = f"{token.rate_per_s:g}"
    return env


def submit(bench: Bench, ours: Ours, contender: Contender) -> tuple[list[str], float]:
    """The contender's jobs, source URLs numbered `?i=N`, queued before any worker runs (the
    ids, and the seconds it took): submitting 6,000 jobs costs the bench ~20 s of a core, which
    must not compete with the workers being measured."""
    source, target = bench.emulator.sample(SOURCE), bench.emulator.sample(TARGET)
    started_s = time.time()
    ids = [ours.producer.submit_swap(f"{source}?i={i}", target).id for i in range(contender.jobs)]
    return ids, time.time() - started_s


@contextlib.contextmanager
def ours_workers(bench: Bench, contender: Contender, ours: Ours) -> Iterator[None]:
    """`bench.instances` workers x `bench.concurrency` threads, answering pings; stopped on the
    way out."""
    argvs = worker_argvs(contender.name, bench.instances, bench.concurrency)
    env = worker_env(bench, contender, ours.prefix)
    with workers(contender.name, argvs, env, ours.producer.app, bench.logs):
        yield


@dataclass
class Revocation:
    """Scenario 2's fault: the `REVOKED_RATE` token put in the provider's `used_up_tokens`
    (every later call with it answered 403 used_up) once `after_jobs` jobs have finished."""

    emulator: Emulator
    token: PoolToken
    after_jobs: int
    at_s: float | None = None
    """Epoch seconds when the emulator had taken the change (its PUT answered)."""
    finished_then: int = 0

    def check(self, tally: Tally) -> None:
        if self.at_s is None and tally.finished >= self.after_jobs:
            self.emulator.configure(used_up_tokens=[self.token.token])
            self.at_s, self.finished_then = time.time(), tally.finished


def revocation(bench: Bench, contender: Contender) -> Revocation | None:
    if not contender.revoke:
        return None
    (token,) = [t for t in bench.tokens if t.rate_per_s == REVOKED_RATE]
    return Revocation(bench.emulator, token, round(contender.jobs * REVOKE_AFTER_SHARE))


@dataclass
class Drained:
    started_s: float
    """Epoch seconds when every worker answered a ping (the cap counts from here)."""
    capped: bool
    tracker: JobRecordTracker
    cpu_busy: list[tuple[float, float]]
    """(epoch s, machine-wide CPU busy % since the previous poll): another load on the two
    cores shows up here, and explains a dip better than a guess."""


def drain(
    bench: Bench,
    contender: Contender,
    tracker: JobRecordTracker,
    on_poll: Callable[[Tally], None],
) -> Drained:
    """Poll the queued jobs until every one ended or `contender.cap_s` passed."""
    task = bench.progress.add_task(contender.name, total=contender.jobs)
    started_s = time.time()
    psutil.cpu_percent()  # starts the first interval
    cpu_busy: list[tuple[float, float]] = []
    while True:
        tally = tracker.poll()
        on_poll(tally)
        cpu_busy.append((time.time(), psutil.cpu_percent()))
        bench.progress.update(task, completed=tally.finished)
        capped = time.time() - started_s >= contender.cap_s
        if tally.finished >= contender.jobs or capped:
            break
        time.sleep(POLL_S)
    bench.progress.stop_task(task)
    return Drained(started_s, tally.finished < contender.jobs, tracker, cpu_busy)


def failure_codes(ours: Ours, ids: list[str]) -> dict[str, int]:
    """How many jobs failed with each error code (one pipelined read of state and last error)."""
    pipe = ours.producer.redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(ours.keys.job(job_id), "state", "last_error")
    codes: dict[str, int] = {}
    for state, last_error in pipe.execute():
        if _text(state) == "failed":
            code = str((json.loads(last_error) if last_error else {}).get("code", "?"))
            codes[code] = codes.get(code, 0) + 1
    return codes


def log_findings(logs: Path, contender: Contender, tokens: tuple[PoolToken, ...]) -> dict[str, Any]:
    """Warning and error lines in the contender's worker logs, and lines holding a token (a
    leak: tokens must never be logged). A few warning lines are kept, tokens masked."""
    warnings, leaks = 0, 0
    sample: list[str] = []
    for path in sorted(logs.glob(f"{contender.name}-{contender.name}[0-9]*.log")):
        for line in path.read_text(errors="replace").splitlines():
            leaked = any(t.token in line for t in tokens)
            leaks += leaked
            if any(mark in line for mark in ("WARNING", "ERROR", "CRITICAL", "Traceback")):
                warnings += 1
                if len(sample) < 5:
                    sample.append("<line holding a token>" if leaked else line[:300])
    return {"log_warnings": warnings, "log_token_leaks": leaks, "log_sample": sample}


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
