"""Helpers of `bench.enqueue` (and `bench.isolation`): rows, Redis memory, message checks,
redis-benchmark and the backfill subprocess.

Kept apart so each bench file reads as its scenario; everything here measures, none of it
decides a goal.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import redis

from faceswap_jobs.batches.enqueue import Item, bulk_job_uuid
from faceswap_jobs.celery_app import SWAP_TASK
from faceswap_jobs.keys import Keys
from faceswap_jobs.ops.sandbox import ManagedProcess, python_module

SAMPLE_MESSAGES = 100
RSS_EVERY_S = 0.1
SETTLE_S = 0.2
"""Pause after closing connections, so Redis has freed their buffers before we read memory."""
_RPS = re.compile(r"LPUSH: ([\d.]+) requests per second")


def cdn_request(i: int) -> dict[str, str]:
    """Realistic URLs: their length sets the message size, so a toy URL would flatter us."""
    return {
        "source_image_url": f"https://cdn.example.com/faces/source/{i:07d}.jpg",
        "target_image_url": f"https://cdn.example.com/faces/target/{i:07d}.jpg",
    }


def items(rows: int, request: Callable[[int], dict[str, str]] = cdn_request) -> list[Item]:
    """Rows as the enqueuer gets them after validation, built before timing: we measure the
    enqueue, not the input parsing (the backfill figure covers that)."""
    return [
        Item(line=i + 2, key=f"req:{i}", request=request(i), end_offset=i, next_line=i + 3)
        for i in range(rows)
    ]


def used_memory(raw: redis.Redis) -> int:
    return int(raw.info("memory")["used_memory"])


def drop_other_clients(raw: redis.Redis) -> None:
    """Disconnect every client but `raw`: a producer's buffers and (Celery's result backend)
    pub/sub subscriptions go, so what is left in `used_memory` is the data itself."""
    raw.client_kill_filter(_type="normal", skipme=True)
    raw.client_kill_filter(_type="pubsub")
    time.sleep(SETTLE_S)


def clean_slate(raw: redis.Redis) -> int:
    """FLUSHALL and no other clients; the `used_memory` every delta starts from."""
    raw.flushall()
    drop_other_clients(raw)
    return used_memory(raw)


def decode(entry: bytes | str) -> tuple[dict[str, Any], list[Any]]:
    """One queued entry as kombu stores it -> (envelope, [args, kwargs, embed])."""
    message = json.loads(entry)
    body = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    return message, json.loads(body)


def sample(raw: redis.Redis, queue: str, batch: str | None = None) -> dict[str, Any]:
    """Average length of the newest `SAMPLE_MESSAGES` entries, and whether each decodes as a
    Celery protocol-2 swap task whose first argument is its own id (and, for our messages, the
    id the batch and row it names derive to)."""
    entries = raw.lrange(queue, 0, SAMPLE_MESSAGES - 1)
    if not entries:
        return {"sampled": 0, "message_bytes": None, "protocol2_ok": False, "problems": ["empty"]}
    problems: list[str] = []
    for entry in entries:
        try:
            message, decoded = decode(entry)
            args, kwargs, embed = decoded
            headers = message["headers"]
            if headers.get("task") != SWAP_TASK or args[0] != headers.get("id"):
                problems.append(f"task/id mismatch: {headers.get('task')} {args[0]}")
            elif not isinstance(kwargs, dict) or not isinstance(embed, dict):
                problems.append("kwargs or embed is not an object")
            elif batch is not None:
                expected = str(bulk_job_uuid(batch, f"req:{args[2]['p']}"))
                if args[0] != expected:
                    problems.append(f"job id {args[0]} is not the row's id {expected}")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            problems.append(f"does not decode: {exc!r}")
    return {
        "sampled": len(entries),
        "message_bytes": sum(len(e) for e in entries) / len(entries),
        "protocol2_ok": not problems,
        "problems": problems[:5],
    }


def queue_bytes(raw: redis.Redis, queue: str) -> int:
    """The queue list alone, counted exactly (`MEMORY USAGE ... SAMPLES 0`)."""
    return int(raw.memory_usage(queue, samples=0) or 0)


def redis_benchmark(
    port: int, rows: int, size: int, pipeline: int, raw: redis.Redis
) -> dict[str, Any]:
    """`redis-benchmark -t lpush` with `size`-byte values: what the server does with no client
    logic at all. Its `mylist` is measured like our queue, then flushed."""
    before = clean_slate(raw)
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n", str(rows),
            "-P", str(pipeline), "-d", str(size), "-q", "-t", "lpush"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True)
    found = _RPS.findall(done.stdout.replace("\r", "\n"))
    if not found:
        raise RuntimeError(f"no LPUSH figure in redis-benchmark's output: {done.stdout[-300:]!r}")
    drop_other_clients(raw)
    pushed = int(raw.llen("mylist"))
    return {
        "command": " ".join(argv),
        "rows": rows,
        "queued": pushed,
        "jobs_per_s": float(found[-1]),
        "bytes_per_job": (used_memory(raw) - before) / max(1, pushed),
        "message_bytes": size,
    }


def write_csv(path: Path, rows: int) -> None:
    with path.open("w") as out:
        out.write("source_image_url,target_image_url\n")
        for i in range(rows):
            r = cdn_request(i)
            out.write(f"{r['source_image_url']},{r['target_image_url']}\n")


def rss_tree(process: psutil.Process) -> int:
    """RSS of the process and its children (the CLI starts none, but it would count)."""
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def backfill(
    redis_url: str,
    rows: int,
    workdir: Path,
    logs: Path,
    on_rows: Callable[[int], None],
) -> dict[str, Any]:
    """`python -m faceswap_jobs backfill` on a CSV of `rows` rows: its peak RSS (sampled every
    0.1 s) and rows/s end to end. The high-water mark is set above the file's size, so the
    producer never waits for workers and the figure is parse + validate + enqueue alone."""
    path, rejects = workdir / f"rows-{rows}.csv", workdir / f"rejects-{rows}.csv"
    write_csv(path, rows)
    prefix, batch, queue = f"bf{rows}", f"bench-{rows}", f"bench.backfill{rows}.bulk"
    env = {**os.environ, "FACESWAP_REDIS_URL": redis_url, "FACESWAP_KEY_PREFIX": prefix,
           "FACESWAP_BULK_QUEUE": queue,
           "FACESWAP_BULK_HIGH_WATER": str(max(2_000_000, 2 * rows))}  # fmt: skip
    argv = python_module("faceswap_jobs", "backfill", str(path), "--batch", batch,
                         "--rejects", str(rejects))  # fmt: skip
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    before = clean_slate(raw)
    batch_key = Keys(prefix).batch(batch)
    started = time.time()
    proc = ManagedProcess(f"backfill-{rows}", argv, logs / f"enqueue-backfill-{rows}.log", env)
    peak = samples = 0
    try:
        handle = psutil.Process(proc.pid)
        while proc.alive():
            try:
                peak = max(peak, rss_tree(handle))
                samples += 1
            except psutil.NoSuchProcess:
                break
            on_rows(int(raw.hget(batch_key, "rows") or 0))
            time.sleep(RSS_EVERY_S)
        code = proc.proc.wait()
        ended = time.time()
    finally:
        proc.stop()
    counters = raw.hgetall(batch_key)
    created = float(counters.get("created_at", started))
    enqueued = int(counters.get("enqueued", 0))
    on_rows(int(counters.get("rows", 0)))
    drop_other_clients(raw)
    result = {
        "rows": rows,
        "exit_code": code,
        "enqueued": enqueued,
        "rejected": int(counters.get("rejected", 0)),
        "queued": int(raw.llen(queue)),
        "peak_rss_bytes": peak,
        "rss_samples": samples,
        "process_wall_s": ended - started,
        "enqueue_s": ended - created,
        "rows_per_s": rows / max(1e-9, ended - created),
        "rows_per_s_with_startup": rows / (ended - started),
        "redis_bytes_per_job": (used_memory(raw) - before) / max(1, enqueued),
        "file_bytes": path.stat().st_size,
        "log": str(logs / f"enqueue-backfill-{rows}.log"),
    }
    path.unlink()
    raw.close()
    return result
