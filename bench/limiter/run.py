"""Rate-limit benchmark: our Redis limiter against Celery's `rate_limit`, judged by the provider.

`python -m bench.limiter [--jobs 2000] [--adaptive-jobs 1200] [--noise-jobs 2000] [--cap-s 150]
[--only NAME ...] [--out bench/results]`

Scenario 1: the emulator enforces R = 20 calls/s per token (bucket of 20, 429 above it) with
near-zero latency, and 2 worker instances x 2 threads drain the jobs. Contenders: ours
(FACESWAP_RATE_PER_S=20, burst 1), Celery `rate_limit` at R per instance (what the docs
suggest) and at R / instances (what a careful user does).
Scenario 1b: the emulator counts a sliding 1-s window of R = 20 calls instead; 4 of our
workers x 8 threads, strict mode (burst 0, `ours-strict-4x8`) and default (burst 1,
`ours-default-4x8`).
Scenario 2 (`ours-adaptive`): ours is configured for 40/s but the provider allows 15/s
(bucket of 15); it must find the real rate by itself.
Scenario 3 (`ours-noise-2`, `-10`, `-20`): no provider limit but 2%, 10% or 20% random 429s
(Retry-After 1 s); ours at 30/s, 2 workers x 8 threads: successes/s against (1 - noise) x 30.
Breaker (`ours-breaker`): the token is revoked (every call 401 invalid_token); 200 jobs, one
worker x 64 threads at 50/s: calls reaching the provider until every job is paused.
Deadline (`ours-deadline`): 40 jobs at 2/s with a 10 s deadline, one worker x 8 threads: no
call may start after its job's deadline.

Every call figure comes from the emulator's ledger, so all contenders are measured the same
way. Each contender runs at most `--cap-s` seconds; its workers are stopped, the emulator is
reset and Redis is flushed before the next one starts, with a fresh key prefix so our
limiter's state starts clean.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.common import analysis
from bench.common.cli import bench_parser
from bench.common.goals import evaluate_goals
from bench.common.stack import emulator, workers
from bench.common.trackers import CeleryResultTracker, Tally
from bench.limiter.contenders import (
    CONCURRENCY,
    INSTANCES,
    OUR_BURST,
    R_PER_S,
    Contender,
    contenders,
)
from bench.limiter.harness import Bench, drain, ours_workers, prepare, sources, submit_numbered
from bench.limiter.plot import plot
from bench.limiter.report import GOALS, MISSING, print_report
from bench.limiter.scenarios import noise_figures, run_breaker, run_deadline
from faceswap_jobs.limits import token_id
from faceswap_jobs.limits.rate import RateConfig, RateLimiter
from faceswap_jobs.ops.sandbox import private_redis, python_module

REPO_ROOT = Path(__file__).resolve().parents[2]
SETTLE_S = 30
"""Scenario 2 must have converged by then (seconds since the first submit)."""
RUNNERS = {"breaker": run_breaker, "deadline": run_deadline}
"""Scenarios with their own run; every other one drains its jobs and reads the ledger."""


def run_contender(bench: Bench, contender: Contender) -> dict[str, Any]:
    """Run one contender on a clean emulator and a flushed Redis; its figures from the ledger."""
    prepare(bench, contender)
    if runner := RUNNERS.get(contender.scenario):
        return {**asdict(contender), **runner(bench, contender)}
    provider = contender.provider_per_s
    drain_jobs = run_ours if contender.kind == "ours" else run_celery
    t0_s, tally, capped, rate_samples = drain_jobs(bench, contender)
    calls = analysis.calls_from_ledger(bench.emulator.ledger())
    stats = analysis.call_stats(calls)
    series = analysis.per_second(calls, t0_s)
    wall_s = None if capped or tally.last_finish_s is None else tally.last_finish_s - t0_s
    result: dict[str, Any] = {
        **asdict(contender),
        "finished": tally.finished,
        "failed": tally.failed,
        "capped": capped,
        "wall_s": wall_s,
        **asdict(stats),
        "rate_limited_share": stats.rate_limited_share,
        "achieved_over_r": stats.success_rate_per_s / provider if provider else None,
        "per_second": series.to_json(),
        "effective_rate": [[round(t, 2), round(r, 3)] for t, r in rate_samples],
    }
    if contender.scenario == "2":
        assert provider is not None
        result |= adaptive_figures(calls, series, t0_s, provider, rate_samples)
    if contender.scenario == "3":
        result |= noise_figures(contender, calls, t0_s, wall_s, rate_samples)
    return result


def adaptive_figures(
    calls: list[analysis.Call],
    series: analysis.PerSecond,
    t0_s: float,
    provider_per_s: float,
    rate_samples: list[tuple[float, float]],
) -> dict[str, Any]:
    """Scenario 2: convergence, and how the limiter behaves once it should have converged."""
    verdicts = analysis.window_verdicts(series, limit_per_s=provider_per_s)
    late = verdicts[SETTLE_S:]
    rate_after = analysis.success_rate_after(calls, t0_s + SETTLE_S)
    return {
        "convergence_s": analysis.rate_convergence_s(rate_samples, provider_per_s),
        "strict_window_convergence_s": analysis.convergence_s(verdicts),
        "rate_limited_share_after_30s": analysis.rate_limited_share_after(calls, t0_s + SETTLE_S),
        "achieved_over_r_after_30s": None if rate_after is None else rate_after / provider_per_s,
        "good_window_share_after_30s": analysis.share(sum(late), len(late)) if late else None,
    }


def run_ours(
    bench: Bench, contender: Contender
) -> tuple[float, Tally, bool, list[tuple[float, float]]]:
    """Our workers; also samples the limiter's effective rate (s since t0, calls/s) as it runs."""
    with ours_workers(bench, contender) as ours:
        jobs = submit_numbered(bench, ours, contender)
        task, t0_s, tracker = jobs.task, jobs.t0_s, jobs.tracker
        limiter = RateLimiter(
            ours.producer.redis,
            ours.keys.rate(token_id(bench.token)),
            ours.keys.bulk_rate(token_id(bench.token)),
            RateConfig(float(contender.setting), burst=contender.burst),
        )

        def sample_rate() -> None:
            rate, margin, _ = limiter.state()
            samples.append((time.time() - t0_s, rate / (1.0 + margin)))

        def finished() -> int:
            return tracker.poll().finished

        samples: list[tuple[float, float]] = []
        capped = drain(bench, task, finished, contender.jobs, t0_s, sample_rate)
        bench.progress.stop_task(task)
    return t0_s, tracker.poll(), capped, samples  # polled again, now the workers are stopped


def run_celery(
    bench: Bench, contender: Contender
) -> tuple[float, Tally, bool, list[tuple[float, float]]]:
    client = Celery("bench-client", broker=bench.redis_url, backend=bench.redis_url)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "BENCH_REDIS_URL": bench.redis_url,
        "BENCH_API_BASE_URL": bench.emulator.base_url,
        "BENCH_API_TOKEN": bench.token,
        "BENCH_RATE_LIMIT": contender.setting,
    }
    argvs = {
        f"base{i}": celery_worker_argv(f"base{i}", contender.concurrency)
        for i in range(1, contender.instances + 1)
    }
    with workers(contender.name, argvs, env, client, bench.logs):
        task = bench.progress.add_task(contender.name, total=contender.jobs)
        source, target = sources(bench)
        t0_s = time.time()
        ids = [
            client.send_task("baseline.swap", args=[f"{source}?i={i}", target]).id
            for i in range(contender.jobs)
        ]
        tracker = CeleryResultTracker(redis.Redis.from_url(bench.redis_url), client, ids)
        capped = drain(bench, task, lambda: tracker.poll().finished, contender.jobs, t0_s)
        bench.progress.stop_task(task)
    tally = tracker.poll()  # once more, now that the workers are stopped
    client.close()
    return t0_s, tally, capped, []


def celery_worker_argv(node: str, concurrency: int) -> list[str]:
    """The worker command line from the brief: threads pool, 2 threads, no mingle or gossip."""
    options = "--pool threads --without-mingle --without-gossip --loglevel=INFO"
    return python_module(
        "celery", "-A", "bench.limiter.celery_baseline", "worker", *options.split(),
        "--concurrency", str(concurrency), "-n", f"{node}@%h",
    )  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser("bench.limiter", __doc__)
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per scenario-1/1b contender")
    parser.add_argument("--adaptive-jobs", type=int, default=1200, help="jobs for scenario 2")
    parser.add_argument(
        "--noise-jobs", type=int, default=2000, help="jobs per scenario-3 contender"
    )
    parser.add_argument("--cap-s", type=float, default=150.0, help="longest run per contender")
    names = [c.name for c in contenders(0, 0, 0)]
    parser.add_argument(
        "--only", action="append", choices=names, metavar="NAME",
        help=f"run only this contender (repeatable): {', '.join(names)}",
    )  # fmt: skip
    return parser.parse_args(argv)


def run_all(
    args: argparse.Namespace, token: str, logs: Path, console: Console
) -> list[dict[str, Any]]:
    """Every contender in turn on one private Redis and one emulator, stopped on the way out."""
    columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn())
    with (
        private_redis() as redis_url,
        emulator(token, rate_per_s=R_PER_S, burst=int(R_PER_S), logs=logs) as emu,
        Progress(*columns, TimeElapsedColumn(), console=console) as progress,
    ):
        bench = Bench(redis_url, emu, token, logs, progress, args.cap_s)
        chosen = [
            c
            for c in contenders(args.jobs, args.adaptive_jobs, args.noise_jobs)
            if not args.only or c.name in args.only
        ]
        return [run_contender(bench, c) for c in chosen]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    console = Console(width=None if sys.stdout.isatty() else 180)
    token = f"bench-{secrets.token_hex(8)}"
    try:
        results = run_all(args, token, logs, console)
    except KeyboardInterrupt:
        console.print("interrupted: every process the bench started has been stopped")
        return 130
    goals = evaluate_goals(GOALS, results, MISSING)
    command = " ".join(["python -m bench.limiter", *sys.argv[1:]])
    report = {"command": command, "r_per_s": R_PER_S, "our_burst": OUR_BURST, "goals": goals}
    report |= {"instances": INSTANCES, "concurrency": CONCURRENCY, "contenders": results}
    (args.out / "limiter.json").write_text(json.dumps(report, indent=2))
    plot(results, args.out / "limiter.png")
    print_report(console, results, goals)
    console.print(f"wrote {args.out / 'limiter.json'}, {args.out / 'limiter.png'}, logs in {logs}")
    return 0 if all(g["met"] for g in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
