"""Scenario C: the callback receiver under an open-loop load of signed success callbacks.

Jobs are put in `waiting_callback` exactly as a callback-mode worker leaves them (record, begun
attempt, in-flight slot held for the callback, `Settlement.accept`), then one success callback
per job is POSTed at fixed times, `rate_per_s` apart, whatever the receiver answers: a slow
answer delays no later send, so queueing inside the receiver shows up as latency instead of
slowing the load down (no coordinated omission). Latency runs from a callback's scheduled send
time to the end of its answer, so time a request spent waiting for a client connection counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from faceswap_jobs.callbacks.signing import callback_url, ticket_for
from faceswap_jobs.models import Attempt, JobRecord, JobState, SwapRequest
from faceswap_jobs.worker.runtime import Runtime

CLIENT_CONNECTIONS = 64
"""Callbacks in flight at once from the load generator (its keep-alive connections)."""
REQUEST_TIMEOUT_S = 10.0
SEED_THREADS = 8
START_DELAY_S = 0.5
"""Head start between building the schedule and its first send."""


@dataclass(frozen=True)
class Callback:
    job_id: str
    url: str
    request: bytes
    """The whole HTTP/1.1 request, built before the clock starts."""


@dataclass(frozen=True)
class Answer:
    due_s: float
    """Scheduled send time, seconds since the first scheduled send."""
    latency_s: float
    """Scheduled send time to the end of the answer (or of the failure)."""
    queued_s: float
    """Scheduled send time to the request leaving: time spent waiting for a free connection."""
    status: int | None
    outcome: str | None
    error: str | None


CALLBACK_URL_WAIT_S = 3600.0


def submission_of(job_id: str) -> str:
    """Each seeded job's submission nonce, derived from its id so the callbacks can name it."""
    return hashlib.sha256(job_id.encode()).hexdigest()[:16]


def seed_waiting_jobs(rt: Runtime, count: int, token_id: str, wait_s: float) -> list[str]:
    """`count` jobs in `waiting_callback` holding an in-flight slot, as a worker leaves them."""

    def one(i: int) -> str:
        now = time.time()
        record = JobRecord(
            id=f"recv-{i:06d}-{time.monotonic_ns()}",
            state=JobState.QUEUED,
            request=SwapRequest.parse(
                {"source_image_url": "https://x/a.png", "target_image_url": "https://x/b.png"}
            ),
            queue=rt.settings.interactive_queue,
            created_at=now,
            updated_at=now,
        )
        rt.store.create(record)
        attempt = Attempt(
            number=1, started_at=now, worker="bench", submission=submission_of(record.id)
        )
        rt.jobs.start_attempt(record.id, attempt)
        slots = rt.limits.member(token_id)
        if slots is None:
            raise RuntimeError(f"token {token_id} is not in the runtime's pool")
        lease, _ = slots.limits.inflight.try_acquire()
        if lease is None:
            raise RuntimeError("in-flight cap too small for the seeded jobs")
        slots.limits.inflight.hold(lease, wait_s)
        rt.jobs.accept(record.id, attempt, f"task-{record.id}", wait_s, lease, token_id)
        return record.id

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        return list(pool.map(one, range(count)))


def callbacks_for(base_url: str, secret: str, job_ids: list[str]) -> list[Callback]:
    """One signed success callback per job, in the vendor's body format."""
    callbacks = []
    for job_id in job_ids:
        ticket = ticket_for(job_id, submission_of(job_id), CALLBACK_URL_WAIT_S, time.time())
        url = callback_url(base_url, secret, ticket)
        parts = urlsplit(url)
        body = json.dumps(
            {
                "success": True,
                "task_id": f"task-{job_id}",
                "image_url": f"http://127.0.0.1/files/task-{job_id}.png",
                "image_width": 64,
                "image_height": 64,
                "image_size": 4096,
            }
        ).encode()
        head = (
            f"POST {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        callbacks.append(Callback(job_id, url, head.encode() + body))
    return callbacks


def offer(
    callbacks: list[Callback], rate_per_s: float, on_sent: Callable[[int], None]
) -> tuple[list[Answer], float]:
    """POST every callback at its scheduled time, `1 / rate_per_s` apart; one Answer each, and
    how late the schedule itself ran at worst (the generator's own health: should be ~0)."""
    return asyncio.run(_offer(callbacks, rate_per_s, on_sent))


async def _offer(
    callbacks: list[Callback], rate_per_s: float, on_sent: Callable[[int], None]
) -> tuple[list[Answer], float]:
    """The schedule feeds a queue at fixed times; `CLIENT_CONNECTIONS` keep-alive connections
    drain it. A callback waiting in the queue for a free connection is already late: its
    latency counts from its scheduled time."""
    loop = asyncio.get_running_loop()
    host, port = _host_port(callbacks[0].url)
    queue: asyncio.Queue[tuple[Callback, float] | None] = asyncio.Queue()
    answers: list[Answer] = []
    start = loop.time() + START_DELAY_S
    connections = [
        asyncio.create_task(_connection(host, port, queue, answers, start))
        for _ in range(CLIENT_CONNECTIONS)
    ]
    await asyncio.sleep(START_DELAY_S / 2)  # let the connections open first
    schedule_lag_s = 0.0
    for i, callback in enumerate(callbacks):
        due = start + i / rate_per_s
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        schedule_lag_s = max(schedule_lag_s, loop.time() - due)
        queue.put_nowait((callback, due))
        if i % 100 == 0:
            on_sent(i)
    on_sent(len(callbacks))
    for _ in connections:
        queue.put_nowait(None)
    await asyncio.gather(*connections)
    return answers, schedule_lag_s


async def _connection(
    host: str,
    port: int,
    queue: asyncio.Queue[tuple[Callback, float] | None],
    answers: list[Answer],
    start: float,
) -> None:
    """One keep-alive HTTP/1.1 connection sending queued callbacks one after the other.

    A minimal client on purpose: httpx's connection pool spent 4.4 ms of CPU per request here,
    so at 500/s the load generator, not the receiver, was the bottleneck.
    """
    loop = asyncio.get_running_loop()
    stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while (item := await queue.get()) is not None:
        callback, due = item
        queued = loop.time() - due
        status = outcome = error = None
        try:
            if stream is None:
                stream = await asyncio.open_connection(host, port)
            status, body = await asyncio.wait_for(
                _exchange(*stream, callback.request), REQUEST_TIMEOUT_S
            )
            outcome = json.loads(body).get("outcome") if status == 200 else None
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
            if stream is not None:
                stream[1].close()
            stream = None
        answers.append(Answer(due - start, loop.time() - due, queued, status, outcome, error))
    if stream is not None:
        stream[1].close()


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """Send one request, read one answer (status line, headers, Content-Length body)."""
    writer.write(request)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80
