"""Enqueue rate and Redis memory per queued job: Celery's `send_task` loop against our batches.

One private redis-server, one run, the same rows for each contender; the database is flushed
between contenders so memory deltas are clean. Our figure is the enqueue alone (rows already
validated, as `submit_many` has them after validation); the naive loop builds and sends one
stock message per job, one round trip each.

    .venv/bin/python -m bench.enqueue [--rows 100000] [--naive-rows 20000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from faceswap_jobs.batches.enqueue import Enqueuer, Item, bulk_job_uuid
from faceswap_jobs.batches.store import BatchStore
from faceswap_jobs.celery_app import SWAP_TASK, create_app
from faceswap_jobs.config import Settings
from faceswap_jobs.keys import Keys
from faceswap_jobs.runtime import redis_client
from faceswap_jobs.sandbox import private_redis

GOAL_RATE = 20_000.0
GOAL_SPEEDUP = 12.0
GOAL_BYTES = 900.0


def request(i: int) -> dict[str, str]:
    return {
        "source_image_url": f"https://cdn.example.com/faces/source/{i:07d}.jpg",
        "target_image_url": f"https://cdn.example.com/faces/target/{i:07d}.jpg",
    }


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def naive(settings: Settings, rows: int) -> float:
    app = create_app(settings)
    queue = settings.bulk_queue
    started = time.perf_counter()
    for i in range(rows):
        job_id = str(bulk_job_uuid("naive", f"req:{i}"))
        app.send_task(SWAP_TASK, args=[job_id, request(i)], task_id=job_id, queue=queue,
                      routing_key=queue)  # fmt: skip
    return time.perf_counter() - started


def ours(settings: Settings, rows: int) -> float:
    client = redis_client(settings)
    keys = Keys(settings.key_prefix)
    store = BatchStore(client, keys)
    store.create("bench", "bench", "")
    items = [Item(line=i + 2, key=f"req:{i}", request=request(i), end_offset=i, next_line=i + 3)
             for i in range(rows)]  # fmt: skip
    enqueuer = Enqueuer(client, keys, store, settings.bulk_queue, high_water=10**9)
    started = time.perf_counter()
    enqueuer.run("bench", items, first_position=0)
    return time.perf_counter() - started


def measure(name: str, run: Any, settings: Settings, rows: int, raw: redis.Redis) -> dict:
    raw.flushall()
    before = used_memory(raw)
    seconds = run(settings, rows)
    queued = raw.llen(settings.bulk_queue)
    sample = raw.lrange(settings.bulk_queue, 0, 99)
    message = json.loads(sample[0])
    body = message["body"]
    if message["properties"].get("body_encoding") == "base64":
        import base64

        body = base64.b64decode(body)
    args = json.loads(body)[0]
    return {
        "contender": name,
        "rows": rows,
        "queued": queued,
        "seconds": seconds,
        "jobs_per_s": rows / seconds,
        "bytes_per_job": (used_memory(raw) - before) / rows,
        "message_bytes": sum(len(m) for m in sample) / len(sample),
        "decodes_as_task": message["headers"]["task"] == SWAP_TASK and isinstance(args[0], str),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.enqueue",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--naive-rows", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    console = Console()
    with private_redis() as url:
        settings = Settings(redis_url=url, key_prefix="bench")
        raw = redis.Redis.from_url(url)
        results = [measure("Celery send_task loop", naive, settings, args.naive_rows, raw),
                   measure("ours (pipelined chunks)", ours, settings, args.rows, raw)]  # fmt: skip
    speedup = results[1]["jobs_per_s"] / results[0]["jobs_per_s"]
    goals = [
        {"goal": f"ours >= {GOAL_RATE:,.0f} jobs/s", "measured": results[1]["jobs_per_s"],
         "met": results[1]["jobs_per_s"] >= GOAL_RATE},
        {"goal": f">= {GOAL_SPEEDUP:g}x the send_task loop", "measured": speedup,
         "met": speedup >= GOAL_SPEEDUP},
        {"goal": f"<= {GOAL_BYTES:g} bytes of Redis memory per queued job",
         "measured": results[1]["bytes_per_job"], "met": results[1]["bytes_per_job"] <= GOAL_BYTES},
    ]  # fmt: skip
    table = Table("contender", "rows", "jobs/s", "bytes/job in Redis", "message bytes", "decodes")
    for r in results:
        table.add_row(r["contender"], f"{r['rows']:,}", f"{r['jobs_per_s']:,.0f}",
                      f"{r['bytes_per_job']:,.0f}", f"{r['message_bytes']:,.0f}",
                      str(r["decodes_as_task"]))  # fmt: skip
    console.print(table)
    for g in goals:
        console.print(f"{g['goal']}: {g['measured']:,.1f} {'met' if g['met'] else 'NOT met'}")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"command": " ".join(["python -m bench.enqueue", *sys.argv[1:]]),
              "results": results, "speedup": speedup, "goals": goals}  # fmt: skip
    (args.out / "enqueue.json").write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.out / 'enqueue.json'}")
    return 0 if all(g["met"] for g in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
