"""Enqueue throughput and Redis memory per queued job: stock Celery against our bulk enqueuer.

`python -m bench.enqueue [--rows 100000] [--naive-rows 20000] [--backfill-rows 100000,1000000]`

All contenders run in one process against ONE private redis-server, each on its own queue and
key prefix, with FLUSHALL (and every other client disconnected) before and after it, so each
memory delta holds its own jobs and nothing else:

- naive: `app.send_task(...)` in a loop, one round trip per job: what the Celery docs show;
- kombu-batch: the same `send_task` calls inside kombu 5.7's `producer.batch()`, which defers
  the LPUSHes into pipelines: the best stock Celery can do;
- ours: `Enqueuer.run` (slim messages, 2,000 per MULTI/EXEC with the batch's bookkeeping);
- redis-benchmark LPUSH with our message size, pipelined 1,000 deep (the physical limit of
  this Redis on this machine) and one round trip per push (for reference; note it runs 50
  clients at once, redis-benchmark's default, where naive is one loop).

Rows are built before the clock starts: this is the enqueue alone. The backfill part runs
`python -m faceswap_jobs backfill` on CSV files of each `--backfill-rows` size and samples the
process's RSS every 0.1 s: parsing, validation and enqueue together, and whether memory stays
flat as the file grows.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
from urllib.parse import urlsplit

import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench.common.cli import bench_parser
from bench.common.report import goal_line
from bench.enqueue import support
from faceswap_jobs.batches.enqueue import Enqueuer, bulk_job_uuid
from faceswap_jobs.batches.store import BatchStore
from faceswap_jobs.celery_app import SWAP_TASK, create_app
from faceswap_jobs.config import Settings
from faceswap_jobs.connections import redis_client
from faceswap_jobs.keys import Keys
from faceswap_jobs.ops.sandbox import private_redis

GOAL_RATE = 20_000.0
GOAL_SPEEDUP = 12.0
GOAL_BYTES = 900.0
GOAL_RSS_RATIO = 1.25
CHUNK_ROWS = 2000
TICK = 1000
"""Progress is updated every this many jobs, so the bar costs nothing measurable."""

Advance = Callable[[int], None]


def naive(settings: Settings, rows: int, advance: Advance) -> dict[str, Any]:
    app = create_app(settings)
    queue = settings.bulk_queue
    jobs = [(str(bulk_job_uuid("naive", f"req:{i}")), support.cdn_request(i)) for i in range(rows)]
    started = time.perf_counter()
    for i, (job_id, request) in enumerate(jobs, start=1):
        app.send_task(SWAP_TASK, args=[job_id, request], task_id=job_id, queue=queue,
                      routing_key=queue)  # fmt: skip
        if i % TICK == 0:
            advance(TICK)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "close": app.close}


def kombu_batch(settings: Settings, rows: int, advance: Advance) -> dict[str, Any]:
    """`send_task(producer=...)` publishes through `producer.publish`, which hands the message
    to the thread's active batch: the LPUSH (and the task-sent event) join a pipeline flushed
    every 1,000 commands. Whether kombu really batched is recorded, not assumed."""
    app = create_app(settings)
    queue = settings.bulk_queue
    jobs = [(str(bulk_job_uuid("kb", f"req:{i}")), support.cdn_request(i)) for i in range(rows)]
    started = time.perf_counter()
    with app.producer_or_acquire() as producer, producer.batch():
        state = producer._batch_local.current
        for i, (job_id, request) in enumerate(jobs, start=1):
            app.send_task(SWAP_TASK, args=[job_id, request], task_id=job_id, queue=queue,
                          routing_key=queue, producer=producer)  # fmt: skip
            if i % TICK == 0:
                advance(TICK)
        batched = state.session is not None and not state.immediate
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "close": app.close, "kombu_batched": batched}


def ours(settings: Settings, rows: int, advance: Advance) -> dict[str, Any]:
    client = redis_client(settings)
    keys = Keys(settings.key_prefix)
    store = BatchStore(client, keys)
    store.create("bench", "bench", "x")
    rows_in = support.items(rows)
    enqueuer = Enqueuer(client, keys, store, settings.bulk_queue, chunk_rows=CHUNK_ROWS,
                        high_water=10**9)  # fmt: skip
    started = time.perf_counter()
    enqueuer.run("bench", rows_in, first_position=0, on_chunk=lambda _, c: advance(len(c)))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "close": client.close}


CONTENDERS: dict[str, Callable[[Settings, int, Advance], dict[str, Any]]] = {
    "naive": naive,
    "kombu-batch": kombu_batch,
    "ours": ours,
}


def measure(name: str, url: str, rows: int, raw: redis.Redis, progress: Progress) -> dict:
    """One contender on a flushed Redis; memory read once with its producer still connected
    and once after it is gone (the figure judged: what the queued jobs themselves cost)."""
    settings = Settings(redis_url=url, key_prefix=f"bench-{name}", bulk_queue=f"bench.{name}.bulk")
    before = support.clean_slate(raw)
    task = progress.add_task(name, total=rows)
    run = CONTENDERS[name](settings, rows, lambda n: progress.advance(task, n))
    progress.update(task, completed=rows)
    connected = support.used_memory(raw)
    run.pop("close")()
    support.drop_other_clients(raw)
    queue = settings.bulk_queue
    seconds = run.pop("seconds")
    return {
        "contender": name,
        "rows": rows,
        "queued": int(raw.llen(queue)),
        "seconds": seconds,
        "jobs_per_s": rows / seconds,
        "bytes_per_job": (support.used_memory(raw) - before) / rows,
        "bytes_per_job_producer_connected": (connected - before) / rows,
        "queue_key_bytes_per_job": support.queue_bytes(raw, queue) / rows,
        **support.sample(raw, queue, batch="bench" if name == "ours" else None),
        **run,
    }


def run_all(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn())
    with private_redis() as url, Progress(*columns, TimeElapsedColumn(), console=console) as bar:
        raw = redis.Redis.from_url(url)
        sizes = {"naive": args.naive_rows, "kombu-batch": args.rows, "ours": args.rows}
        results = [measure(name, url, sizes[name], raw, bar) for name in CONTENDERS]
        size = round(results[-1]["message_bytes"])
        port = int(urlsplit(url).port or 6379)
        for pipeline in (1000, 1):
            task = bar.add_task(f"redis-benchmark -P {pipeline}", total=None)
            limit = support.redis_benchmark(port, args.rows, size, pipeline, raw)
            bar.update(task, total=args.rows, completed=args.rows)
            results.append({"contender": f"redis-benchmark -P {pipeline}", **limit})
        support.clean_slate(raw)
        backfills = [] if args.skip_backfill else run_backfills(url, args, bar)
        info = raw.info("server")
        raw.close()
    return {"redis_version": info["redis_version"], "contenders": results, "backfill": backfills}


def run_backfills(url: str, args: argparse.Namespace, bar: Progress) -> list[dict[str, Any]]:
    results = []
    with TemporaryDirectory(prefix="bench-backfill-") as tmp:
        for rows in args.backfill_rows:
            task = bar.add_task(f"backfill {rows:,}", total=rows)
            on_rows = functools.partial(_set_completed, bar, task)
            results.append(support.backfill(url, rows, Path(tmp), args.logs, on_rows))
    return results


def _set_completed(bar: Progress, task: Any, rows: int) -> None:
    bar.update(task, completed=rows)


def evaluate(report: dict[str, Any]) -> list[dict[str, Any]]:
    by = {r["contender"]: r for r in report["contenders"]}
    ours_r, naive_r = by["ours"], by["naive"]
    speedup = ours_r["jobs_per_s"] / naive_r["jobs_per_s"]
    goals = [
        {"goal": f"ours >= {GOAL_RATE:,.0f} jobs/s", "measured": ours_r["jobs_per_s"],
         "met": ours_r["jobs_per_s"] >= GOAL_RATE},
        {"goal": f"ours >= {GOAL_SPEEDUP:g}x naive send_task", "measured": speedup,
         "met": speedup >= GOAL_SPEEDUP},
        {"goal": f"ours <= {GOAL_BYTES:g} bytes of Redis memory per queued job",
         "measured": ours_r["bytes_per_job"], "met": ours_r["bytes_per_job"] <= GOAL_BYTES},
        {"goal": "our messages decode as Celery protocol-2 swap tasks",
         "measured": ours_r["protocol2_ok"], "met": bool(ours_r["protocol2_ok"])},
    ]  # fmt: skip
    sizes = sorted(b["rows"] for b in report["backfill"])
    if len(sizes) >= 2:
        runs = {b["rows"]: b for b in report["backfill"]}
        small, large = runs[sizes[0]], runs[sizes[-1]]
        clean = all(b["exit_code"] == 0 and b["enqueued"] == b["rows"] for b in (small, large))
        ratio = large["peak_rss_bytes"] / small["peak_rss_bytes"] if clean else None
        goals.append({
            "goal": f"backfill peak RSS at {large['rows']:,} rows <= {GOAL_RSS_RATIO:g}x "
                    f"that at {small['rows']:,} (both runs complete)",
            "measured": ratio, "met": ratio is not None and ratio <= GOAL_RSS_RATIO,
        })  # fmt: skip
    return goals


def print_report(console: Console, report: dict[str, Any]) -> None:
    naive_rate = report["contenders"][0]["jobs_per_s"]
    table = Table("contender", "rows", "s", "jobs/s", "vs naive", "Redis B/job",
                  "B/job (producer conn.)", "msg bytes", "protocol 2", title="enqueue")  # fmt: skip
    for r in report["contenders"]:
        ok = r.get("protocol2_ok")
        table.add_row(
            r["contender"], f"{r['rows']:,}", f"{r['seconds']:.2f}" if "seconds" in r else "-",
            f"{r['jobs_per_s']:,.0f}", f"{r['jobs_per_s'] / naive_rate:.1f}x",
            f"{r['bytes_per_job']:,.0f}",
            f"{r['bytes_per_job_producer_connected']:,.0f}" if "seconds" in r else "-",
            f"{r['message_bytes']:,.0f}", "-" if ok is None else ("yes" if ok else "NO"),
        )  # fmt: skip
    console.print(table)
    if report["backfill"]:
        bf = Table("rows", "exit", "enqueued", "peak RSS MB", "rows/s", "rows/s incl. start-up",
                   "Redis B/job", title="backfill CLI (parse + validate + enqueue)")  # fmt: skip
        for b in report["backfill"]:
            bf.add_row(f"{b['rows']:,}", str(b["exit_code"]), f"{b['enqueued']:,}",
                       f"{b['peak_rss_bytes'] / 2**20:,.1f}", f"{b['rows_per_s']:,.0f}",
                       f"{b['rows_per_s_with_startup']:,.0f}",
                       f"{b['redis_bytes_per_job']:,.0f}")  # fmt: skip
        console.print(bf)
    for g in report["goals"]:
        m = g["measured"]
        shown = f"{m:,.2f}" if isinstance(m, float) else str(m)
        console.print(goal_line(g["goal"], shown, g["met"]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser("bench.enqueue", __doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="jobs for kombu-batch, ours")
    parser.add_argument("--naive-rows", type=int, default=20_000, help="jobs for the slow loop")
    parser.add_argument(
        "--backfill-rows", default="100000,1000000",
        type=lambda s: sorted({int(x) for x in s.split(",") if x.strip()}),
        help="comma-separated CSV sizes for the backfill RSS figure",
    )  # fmt: skip
    parser.add_argument("--skip-backfill", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.logs = args.out / "logs"
    args.logs.mkdir(parents=True, exist_ok=True)
    console = Console(width=None if sys.stdout.isatty() else 150)
    try:
        report = run_all(args, console)
    except KeyboardInterrupt:
        console.print("interrupted: every process the bench started has been stopped")
        return 130
    given = sys.argv[1:] if argv is None else argv
    report = {"command": " ".join(["python -m bench.enqueue", *given]),
              "rows": args.rows, "naive_rows": args.naive_rows, "chunk_rows": CHUNK_ROWS,
              **report}  # fmt: skip
    report["goals"] = evaluate(report)
    (args.out / "enqueue.json").write_text(json.dumps(report, indent=2))
    print_report(console, report)
    console.print(f"wrote {args.out / 'enqueue.json'}")
    return 0 if all(g["met"] for g in report["goals"]) else 1


if __name__ == "__main__":
    sys.exit(main())
