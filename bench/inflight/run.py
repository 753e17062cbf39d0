"""Calls in flight: how many minute-long swaps each way of running our task code keeps going.

`python -m bench.inflight [--jobs 5000] [--latency-s 60] [--cap-s 130] [--out bench/results]`

A swap takes minutes, so throughput = calls in flight / latency. Every contender runs OUR task
through `python -m faceswap_jobs worker` (one worker process, B-callback two; each one's
scheduler thread is the "beat"), against an emulator whose every swap takes `--latency-s`
(time scale 1.0):

- A (the issue's): provider and our limiter at 20/s, `--jobs` jobs. prefork -c 2 and threads
  -c 64 can only reach 2 / 60 and 64 / 60 jobs/s, so they run `--cap-s` seconds; our sync pool
  (threads sized from FACESWAP_MAX_IN_FLIGHT=1600) and callback mode run until every job ends.
- B (capacity): no provider limit. Sync pool: 1,600 jobs at once at 1000/s, to hold >= 1,500
  calls in one process. Callback mode: 12,000 jobs at 100/s, so 6,000 are in flight at once,
  submitted by `--callback-processes` worker processes (2: one process's Python tops out near
  100 submissions/s on one core).
- C: the receiver alone under an open-loop 500 signed callbacks/s for 20 s.

Figures: completions/s in steady state against min(rate, calls it can hold / latency), peak
calls in flight at the provider (ledger and callback log), peak RSS and CPU of our processes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import secrets
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.common import analysis
from bench.common.cli import bench_parser
from bench.common.stack import workers
from bench.inflight import flight
from bench.inflight.contenders import (
    PACKAGE,
    RATE_PER_S,
    Bench,
    Contender,
    contenders,
    fresh_prefix,
    our_env,
)
from bench.inflight.finishes import FinishTracker, in_flight_slots, job_states
from bench.inflight.procs import (
    SlowEmulator,
    code_fingerprint,
    count_in_log,
    log_problems,
    log_size,
    receiver,
    slow_emulator,
)
from bench.inflight.receiver import run_receiver
from bench.inflight.report import evaluate_goals, plot, print_report
from bench.inflight.usage import Usage, machine_busy_s, own_cpu_s, pid_cpu_s
from faceswap_jobs.config import Settings
from faceswap_jobs.keys import Keys
from faceswap_jobs.limits import token_id
from faceswap_jobs.ops.sandbox import ManagedProcess, private_redis, python_module
from faceswap_jobs.producer.submit import Producer

SAMPLE_S = 1.0
SOURCE, TARGET = "astronaut.png", "chelsea.png"
"""Every job swaps the same two samples: the emulator downloads and decodes them once."""


def run_contender(bench: Bench, c: Contender) -> dict[str, Any]:
    """One contender on a fresh emulator, a flushed Redis and a fresh key prefix."""
    prefix = fresh_prefix(bench.redis_url, c.slug)
    logs: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:
        emulator = stack.enter_context(
            slow_emulator(
                bench.token,
                latency_s=bench.latency_s,
                rate_per_s=c.rate_per_s if c.provider_limited else None,
                env=os.environ,
                log_path=bench.logs / f"inflight-{c.slug}-emulator.log",
            )
        )
        extra = {
            "FACESWAP_API_BASE_URL": emulator.base_url,
            "FACESWAP_RATE_PER_S": f"{c.rate_per_s:g}",
            "FACESWAP_MAX_IN_FLIGHT": str(c.max_in_flight),
        }
        roots: dict[str, ManagedProcess] = {}
        if c.mode == "callback":
            logs["receiver"] = bench.logs / f"inflight-{c.slug}-receiver.log"
            url, roots["receiver"] = stack.enter_context(
                receiver(our_env(bench, prefix), logs["receiver"])
            )
            extra["FACESWAP_CALLBACK_BASE_URL"] = url
        producer = Producer(Settings(redis_url=bench.redis_url, key_prefix=prefix))
        code = code_fingerprint(PACKAGE)  # what the worker (and receiver) start with
        argvs = {
            f"bench{i or ''}": python_module(
                "faceswap_jobs", "worker", *c.worker_args, f"--hostname=bench{i or ''}@%h"
            )
            for i in range(c.processes)
        }
        started = stack.enter_context(
            workers(f"inflight-{c.slug}", argvs, our_env(bench, prefix, **extra),
                    producer.app, bench.logs)
        )  # fmt: skip
        for i, process in enumerate(started):
            name = f"worker{i + 1 if i else ''}"
            roots[name], logs[name] = process, process.log_path
        return {"code": code, **measure(bench, c, emulator, producer, roots, logs)}


def measure(
    bench: Bench,
    c: Contender,
    emulator: SlowEmulator,
    producer: Producer,
    roots: dict[str, ManagedProcess],
    logs: dict[str, Path],
) -> dict[str, Any]:
    """Submit, watch every second until done (or capped), then read the provider's records."""
    keys, tid = Keys(producer.settings.key_prefix), token_id(bench.token)
    usage = Usage({name: process.pid for name, process in roots.items()})
    redis_pid = int(producer.redis.info("server")["process_id"])
    usage.mark()
    redis_cpu0, emulator_cpu0 = pid_cpu_s(redis_pid), pid_cpu_s(emulator.pid)
    machine0, bench0 = machine_busy_s(), own_cpu_s()
    ids: list[str] = []
    submit_errors: list[str] = []
    t0 = time.time()
    submitter = threading.Thread(
        target=submit_all, args=(producer, emulator, c.jobs, ids, submit_errors), daemon=True
    )
    submitter.start()
    tracker = FinishTracker(producer.redis, keys, ids)
    task = bench.progress.add_task(c.slug, total=c.jobs, info="")
    limit = c.limit_per_s(bench.latency_s)
    deadline = t0 + (c.cap_s or c.jobs / limit + 2 * bench.latency_s + 120)
    samples: list[dict[str, Any]] = []
    stop = "done"
    while True:
        finished = tracker.poll()
        slots = in_flight_slots(producer.redis, keys, tid)
        rss = usage.sample()
        now = time.time()
        samples.append({"t_s": round(now - t0, 2), "finished": finished, "slots": slots,
                        "rss_mb": {k: round(v, 1) for k, v in rss.items()}})  # fmt: skip
        info = f"slots in flight {slots:>5}  RSS {rss['total']:>4.0f} MB"
        bench.progress.update(task, completed=finished, info=info)
        if finished >= c.jobs or submit_errors:
            stop = "done" if not submit_errors else "submit failed"
            break
        if now >= deadline:
            stop = "capped" if c.cap_s else "timed out"
            break
        if not all(p.alive() for p in roots.values()):
            stop = "process died"
            break
        time.sleep(max(0.0, t0 + len(samples) * SAMPLE_S - time.time()))
    run_end = time.time()
    usage.sample()
    cpu_s, redis_cpu_s = usage.cpu_s(), pid_cpu_s(redis_pid) - redis_cpu0
    emulator_cpu_s = pid_cpu_s(emulator.pid) - emulator_cpu0
    machine_s, bench_s = machine_busy_s() - machine0, own_cpu_s() - bench0
    other_s = machine_s - cpu_s - redis_cpu_s - emulator_cpu_s - bench_s
    log_end = {name: log_size(path) for name, path in logs.items()}
    submitter.join(timeout=60.0)
    ledger = emulator.ledger()
    deliveries = emulator.callbacks() if c.mode == "callback" else []
    states = job_states(producer.redis, keys, list(ids))
    bench.progress.stop_task(task)
    figures = {"stop": stop, "submit_errors": submit_errors[:3], "job_states": states}
    figures |= {"cpu_s": cpu_s, "cpu_s_by_process": usage.cpu_s_by_tree(), "samples": samples}
    figures |= {"redis_cpu_s": redis_cpu_s, "emulator_cpu_s": emulator_cpu_s}
    figures |= {"bench_cpu_s": bench_s, "machine_busy_cpu_s": machine_s, "other_cpu_s": other_s}
    figures |= {"peak_threads": usage.peak_threads}
    figures["task_deliveries"] = sum(
        count_in_log(path, log_end[name], "] received")
        for name, path in logs.items()
        if name.startswith("worker")
    )
    figures |= {"peak_rss_mb": usage.peak_rss_mb, "peak_total_rss_mb": usage.peak_total_rss_mb}
    figures["log_problems"] = {n: log_problems(p, log_end[n]) for n, p in logs.items()}
    figures["emulator_log_problems"] = log_problems(emulator.log_path, log_size(emulator.log_path))
    result = {**asdict(c), **figures}
    result |= provider_figures(bench, c, t0, run_end, ledger, deliveries, tracker)
    done = result["finished"]
    result["peak_slots"] = max(s["slots"] for s in samples)
    result["cpu_s_per_1000"] = cpu_s / done * 1000 if done else None
    result["cpu_s_per_1000_by_process"] = {
        name: value / done * 1000 if done else None
        for name, value in result["cpu_s_by_process"].items()
    }
    result["redis_cpu_s_per_1000"] = redis_cpu_s / done * 1000 if done else None
    return result


def submit_all(
    producer: Producer, emulator: SlowEmulator, count: int, ids: list[str], errors: list[str]
) -> None:
    """Submit `count` swaps as fast as the producer goes, appending each job id to `ids`."""
    source, target = emulator.sample(SOURCE), emulator.sample(TARGET)
    try:
        for _ in range(count):
            ids.append(producer.submit_swap(source, target).id)
    except Exception as exc:  # reported in the results, and the run stops
        errors.append(f"{type(exc).__name__}: {exc}")


def provider_figures(
    bench: Bench,
    c: Contender,
    t0: float,
    run_end: float,
    ledger: list[dict[str, Any]],
    deliveries: list[dict[str, Any]],
    tracker: FinishTracker,
) -> dict[str, Any]:
    """In flight from the provider's records; completions/s from the job records."""
    intervals = flight.call_intervals(ledger, deliveries, until_s=run_end)
    seconds = math.ceil(run_end - t0) + 1
    finish_times = [t for t in tracker.finish_times_s if t <= run_end]
    last_start = max((float(e["time"]) for e in ledger), default=t0)
    window = flight.steady_window(t0, bench.latency_s, last_start, run_end)
    rate = flight.completions_per_s(finish_times, window) if c.judged else None
    limit = c.limit_per_s(bench.latency_s)
    outcomes: dict[str, int] = {}
    for entry in ledger:
        outcomes[entry["outcome"]] = outcomes.get(entry["outcome"], 0) + 1
    stats = analysis.call_stats(analysis.calls_from_ledger(ledger))
    done = len(finish_times)
    return {
        "finished": done,
        "failed": tracker.failed,
        "wall_s": max(finish_times) - t0 if finish_times and done >= c.jobs else None,
        "run_s": run_end - t0,
        "latency_s": bench.latency_s,
        "limit_per_s": limit,
        "steady_window_s": None if window is None else [window.start_s - t0, window.end_s - t0],
        "completions_per_s": rate,
        "fraction_of_limit": None if rate is None else rate / limit,
        "calls": len(ledger),
        "call_outcomes": outcomes,
        "rate_limited": stats.rate_limited,
        "max_calls_1s": stats.max_calls_1s,
        "callback_deliveries": len(deliveries),
        "peak_in_flight": flight.peak_in_flight(intervals),
        "series": {
            "in_flight": flight.in_flight_series(intervals, t0, seconds),
            "completions": flight.per_second_counts(finish_times, t0, seconds),
        },
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser("bench.inflight", __doc__)
    add = parser.add_argument
    add("--jobs", type=int, default=5000, help="jobs per scenario-A contender")
    add("--latency-s", type=float, default=60.0, help="every swap's latency (time scale 1.0)")
    add("--cap-s", type=float, default=130.0, help="run time of prefork -c 2 and threads -c 64")
    add(
        "--fast-cap-s",
        type=float,
        default=None,
        help="cap our sync pool and callback mode in A too (default: run until all jobs end)",
    )
    add("--capacity-jobs", type=int, default=1600, help="B: jobs submitted at once, sync pool")
    add("--callback-jobs", type=int, default=12_000, help="B: jobs for callback mode")
    add("--callback-rate", type=float, default=100.0, help="B: our rate for callback mode")
    add("--receiver-rate", type=float, default=500.0, help="C: callbacks offered per second")
    add("--receiver-s", type=float, default=20.0, help="C: how long they are offered")
    add("--receiver-workers", type=int, default=1, help="C: receiver processes (`--workers`)")
    add("--callback-processes", type=int, default=2, help="B: callback-mode worker processes")
    add("--only", default="", help="comma-separated slugs, e.g. A-sync,C-receiver")
    return parser.parse_args(argv)


def run_all(args: argparse.Namespace, console: Console) -> tuple[list[dict], dict | None]:
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    chosen = [c for c in contenders(args) if not only or c.slug in only]
    logs = args.out / "logs"
    columns = (TextColumn("{task.description:<11}"), BarColumn(), MofNCompleteColumn())
    with (
        private_redis() as redis_url,
        Progress(*columns, TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                 console=console) as progress,
    ):  # fmt: skip
        secret = secrets.token_urlsafe(32)
        bench = Bench(redis_url, f"bench-{secrets.token_hex(8)}", secret, args.latency_s, logs,
                      progress)  # fmt: skip
        results = [run_contender(bench, c) for c in chosen]
        recv = None
        if not only or "C-receiver" in only:
            recv = run_receiver(bench, args.receiver_rate, args.receiver_s, args.receiver_workers)
    return results, recv


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwind the context managers: they stop every process we started


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    args = parse_args(argv)
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    for old_log in (args.out / "logs").glob("inflight-*.log"):
        old_log.unlink()  # processes append to their logs: start each run clean
    console = Console(width=None if sys.stdout.isatty() else 160)
    code_at_start = code_fingerprint(PACKAGE)
    try:
        results, recv = run_all(args, console)
    except KeyboardInterrupt:
        console.print("interrupted: every process the bench started has been stopped")
        return 130
    codes = {code_at_start, code_fingerprint(PACKAGE)} | {r["code"] for r in results}
    codes |= {recv["code"]} if recv else set()
    if len(codes) > 1:
        console.print(f"[red]faceswap_jobs/ changed during the run ({len(codes)} versions): "
                      "contenders ran different code; see `code` per contender[/red]")  # fmt: skip
    goals = evaluate_goals(results, recv)
    command = " ".join(["python -m bench.inflight", *sys.argv[1:]])
    report = {"command": command, "latency_s": args.latency_s, "time_scale": 1.0}
    report |= {"code_versions": sorted(codes)}
    report |= {"rate_per_s": RATE_PER_S, "goals": goals, "contenders": results, "receiver": recv}
    (args.out / "inflight.json").write_text(json.dumps(report, indent=2))
    plot(results, recv, args.out / "inflight.png")
    print_report(console, results, recv, goals)
    console.print(f"wrote {args.out / 'inflight.json'}, {args.out / 'inflight.png'}, logs in "
                  f"{args.out / 'logs'}")  # fmt: skip
    return 0 if goals and all(g["met"] for g in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
