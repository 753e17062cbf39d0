"""Fault drill: 200 jobs through an emulator injecting 20% HTTP 500s and 10% 429s.

`python -m bench.faults [--jobs 200] [--out bench/results]`

Prints how every call the emulator received is accounted for: each job's calls in its own
record against the ledger, successes against jobs, retried failures against injected faults.
Not a timing benchmark: the figures are counts, and they must reconcile exactly.
"""

from __future__ import annotations

import collections
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.table import Table

from bench.common.cli import bench_parser
from bench.common.stack import emulator, workers
from faceswap_jobs.config import Settings
from faceswap_jobs.models import JobState
from faceswap_jobs.ops.sandbox import private_redis, python_module
from faceswap_jobs.producer.submit import Producer

FAULTS = {"fault_500": 0.2, "fault_429": 0.1, "latency_min_s": 0.05, "latency_max_s": 0.1}
WORKER_ENV = {
    "FACESWAP_RATE_PER_S": "1000",
    "FACESWAP_MAX_ATTEMPTS": "10",
    "FACESWAP_BACKOFF_BASE_S": "0.05",
    "FACESWAP_BACKOFF_CAP_S": "1",
    "FACESWAP_RETRY_AFTER_CAP_S": "0.5",
    "FACESWAP_RATE_FLOOR_PER_S": "100",
}


def drill(jobs: int, logs: Path, console: Console) -> dict[str, Any]:
    token = f"drill-{secrets.token_hex(8)}"
    with (
        private_redis() as redis_url,
        emulator(token, rate_per_s=10_000, burst=10_000, logs=logs) as emu,
    ):
        requests.put(f"{emu.base_url}/_emulator/config", json=FAULTS, timeout=5).raise_for_status()
        producer = Producer(Settings(redis_url=redis_url))
        env = {**os.environ, **WORKER_ENV, "FACESWAP_REDIS_URL": redis_url,
               "FACESWAP_API_BASE_URL": emu.base_url, "FACESWAP_API_TOKEN": token}  # fmt: skip
        argv = python_module("faceswap_jobs", "worker", "--concurrency=16", "--hostname=drill@%h")
        with workers("faults", {"drill": argv}, env, producer.app, logs):
            source, target = emu.sample("astronaut.png"), emu.sample("chelsea.png")
            ids = [producer.submit_swap(f"{source}?job={i}", target).id for i in range(jobs)]
            with console.status("draining"):
                while not all((r := producer.get_job(i)) and r.state.finished for i in ids):
                    time.sleep(0.25)
            records = [producer.get_job(i) for i in ids]
        ledger = emu.ledger()
    outcomes = collections.Counter(c["outcome"] for c in ledger)
    per_job = collections.Counter(
        c["request"]["source_image_url"].rsplit("=", 1)[1] for c in ledger
    )
    states = collections.Counter(str(r.state) for r in records if r)
    retried = sum(len(r.history) - 1 for r in records if r)
    mismatched = sum(per_job[str(i)] != r.calls for i, r in enumerate(records) if r)
    return {
        "jobs": jobs,
        "states": dict(states),
        "ledger_calls": len(ledger),
        "ledger_outcomes": dict(outcomes),
        "retried_failures_in_records": retried,
        "deferrals_not_counted": sum(not a.counted for r in records if r for a in r.history),
        "jobs_whose_calls_differ_from_the_ledger": mismatched,
        "reconciles": len(ledger) == states.get(JobState.SUCCEEDED, 0) + retried
        and mismatched == 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("bench.faults", __doc__)
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args(argv)
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    console = Console()
    result = drill(args.jobs, args.out / "logs", console)
    (args.out / "faults.json").write_text(json.dumps(result, indent=2))
    table = Table("figure", "value", title="200 jobs, 20% 500s + 10% 429s injected")
    for name, value in result.items():
        table.add_row(name, str(value))
    console.print(table)
    return 0 if result["reconciles"] and result["states"] == {"succeeded": args.jobs} else 1


if __name__ == "__main__":
    sys.exit(main())
