"""Token-pool benchmark: our workers spreading calls over several tokens, each with its own
provider limit, judged by the provider.

`python -m bench.pool [--jobs 6000] [--cap-s 120] [--instances 2] [--concurrency 16]
[--only NAME ...] [--out bench/results]`

The emulator (near-zero latency) knows three tokens and limits each to its own rate: 10, 20
and 30 calls/s (a token bucket of one second's worth each).
Scenario 1 (`pool`): the workers hold all three in FACESWAP_API_TOKENS (each with its rate) and
drain `--jobs` jobs: they should reach 60 calls/s with almost no 429.
Scenario 2 (`pool-revoke`): the same, and once a third of the jobs finished the 20/s token is
revoked (the emulator answers every later call with it 403 used_up): no job may fail, and the
pool should settle at the 40/s the other two allow.
Baseline (`one-token`): the 30/s token alone (FACESWAP_API_TOKEN, FACESWAP_RATE_PER_S=30) over
the same jobs, stopped after `--cap-s`: what a pool buys, since the provider limits each token
on its own and no single token can be given the sum.

Every call figure comes from the emulator's ledger, per token by its hash; time 0 is the
contender's first call. Each contender gets a reset emulator, a flushed Redis and a fresh key
prefix, and its jobs are queued before its workers start.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.common.cli import bench_parser
from bench.common.goals import evaluate_goals
from bench.common.ours import Ours
from bench.common.stack import emulator
from bench.common.trackers import JobRecordTracker
from bench.pool import figures
from bench.pool.contenders import (
    REVOKED_RATE,
    TOKEN_RATES,
    Contender,
    contenders,
    new_tokens,
)
from bench.pool.harness import (
    Bench,
    drain,
    failure_codes,
    log_findings,
    ours_workers,
    prepare,
    revocation,
    submit,
)
from bench.pool.plot import plot
from bench.pool.report import GOALS, print_report, summary
from faceswap_jobs.ops.sandbox import private_redis

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_contender(bench: Bench, contender: Contender) -> dict[str, Any]:
    """One contender on a clean emulator and a flushed Redis, its jobs queued before its
    workers start; its figures from the ledger, time 0 being the first call it made."""
    prepare(bench)
    revoke = revocation(bench, contender)
    ours = Ours.fresh(bench.redis_url, contender.name)
    ids, submit_s = submit(bench, ours, contender)
    tracker = JobRecordTracker(ours.producer.redis, ours.keys, ids)
    with ours_workers(bench, contender, ours):
        drained = drain(bench, contender, tracker, revoke.check if revoke else lambda _: None)
        codes = failure_codes(ours, ids)
    entries = bench.emulator.ledger()
    tally = tracker.poll()  # again, now the workers are stopped
    t0_s = min((float(e["time"]) for e in entries), default=drained.started_s)
    ended = not drained.capped and tally.last_finish_s is not None
    wall_s = tally.last_finish_s - t0_s if ended and tally.last_finish_s else None
    result: dict[str, Any] = {
        "name": contender.name,
        "scenario": contender.scenario,
        "jobs": contender.jobs,
        "rates": list(contender.rates),
        "pool": contender.pool,
        "instances": bench.instances,
        "concurrency": bench.concurrency,
        "cap_s": contender.cap_s,
        "capped": drained.capped,
        "finished": tally.finished,
        "unfinished": contender.jobs - tally.finished,
        "failed": tally.failed,
        "failure_codes": codes,
        "wall_s": wall_s,
        "submit_s": submit_s,
        "first_call_after_start_s": t0_s - drained.started_s,
        "cpu_busy_mean": sum(b for _, b in drained.cpu_busy) / max(1, len(drained.cpu_busy)),
        "cpu_busy": [[round(t - t0_s, 2), busy] for t, busy in drained.cpu_busy],
        **figures.totals(entries, t0_s, contender.target_per_s),
        "per_token": figures.per_token(entries, bench.tokens, t0_s),
        **log_findings(bench.logs, contender, bench.tokens),
    }
    if revoke is not None:
        result["revoked_after_jobs"] = revoke.finished_then
        result["revocation"] = (
            None
            if revoke.at_s is None
            else figures.after_revocation(
                entries, revoke.token, revoke.at_s, t0_s, contender.after_revoke_per_s
            )
        )
    return result


def code_state() -> dict[str, Any]:
    """The commit measured, and whether `faceswap_jobs/` had uncommitted changes: figures are
    only comparable between runs of the same code."""
    git = ["git", "-C", str(REPO_ROOT)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
    status = subprocess.run([*git, "status", "--porcelain", "--", "faceswap_jobs"],
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    return {"commit": head.stdout.strip() or None, "uncommitted_changes": bool(status.stdout)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser("bench.pool", __doc__)
    parser.add_argument("--jobs", type=int, default=6000, help="jobs per contender")
    parser.add_argument(
        "--cap-s", type=float, default=120.0, help="longest run of the one-token baseline"
    )
    parser.add_argument("--instances", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=16, help="threads per worker")
    names = [c.name for c in contenders(0, 0.0)]
    parser.add_argument(
        "--only", action="append", choices=names, metavar="NAME",
        help=f"run only this contender (repeatable): {', '.join(names)}",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.jobs < 3 or args.cap_s <= 0 or args.instances < 1 or args.concurrency < 1:
        parser.error("--jobs must be at least 3; --cap-s, --instances, --concurrency positive")
    return args


def run_all(args: argparse.Namespace, logs: Path, console: Console) -> list[dict[str, Any]]:
    """Every chosen contender in turn on one private Redis and one emulator, stopped on exit."""
    tokens = new_tokens()
    first, *more = (t.token for t in tokens)
    columns = (TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn())
    with (
        private_redis() as redis_url,
        emulator(first, rate_per_s=max(TOKEN_RATES), burst=1, logs=logs, more_tokens=more) as emu,
        Progress(*columns, TimeElapsedColumn(), console=console) as progress,
    ):
        bench = Bench(redis_url, emu, tokens, logs, progress, args.instances, args.concurrency)
        chosen = [
            c for c in contenders(args.jobs, args.cap_s) if not args.only or c.name in args.only
        ]
        return [run_contender(bench, c) for c in chosen]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs = args.out / "logs" / "pool"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()  # processes append to their logs: start each run's empty
    console = Console(width=None if sys.stdout.isatty() else 200)
    try:
        results = run_all(args, logs, console)
    except KeyboardInterrupt:
        console.print("interrupted: every process the bench started has been stopped")
        return 130
    goals = evaluate_goals(GOALS, results)
    report = {
        "command": " ".join(["python -m bench.pool", *sys.argv[1:]]),
        "code": code_state(),
        "token_rates": list(TOKEN_RATES),
        "revoked_rate": REVOKED_RATE,
        "instances": args.instances,
        "concurrency": args.concurrency,
        "goals": goals,
        "contenders": results,
    }
    (args.out / "pool.json").write_text(json.dumps(report, indent=2))
    plot(results, args.out / "pool.png")
    print_report(console, results, goals)
    print(json.dumps(summary(results, goals)), flush=True)
    console.print(f"code: {report['code']}")
    console.print(f"wrote {args.out / 'pool.json'}, {args.out / 'pool.png'}, logs in {logs}")
    return 0 if all(g["met"] for g in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
