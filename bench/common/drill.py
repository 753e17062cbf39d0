"""One fault drill: jobs through real workers, Redis (with an append-only file) and the emulator,
a fault in the middle, then an account of every job and every call the emulator was billed for.

Shared by the fast drills in `tests/drills/` and the full-size `python -m bench.drills`, so the
suite that gates every change and the figures in the README come from the same code.

A job is *lost* when its record is gone, *stuck* when it is not finished when the drill gives
up. A *billed* call is one the emulator answered with a success (or, in callback mode, accepted);
a job billed more than once is a *duplicate*, and it is *explained* when its record shows the
earlier call as `interrupted` or ambiguous (the worker could not know whether it was billed).
"""

from __future__ import annotations

import collections
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

from bench.common.stack import Emulator, emulator
from faceswap_jobs.config import Settings
from faceswap_jobs.models import JobRecord
from faceswap_jobs.ops.sandbox import (
    ManagedProcess,
    RedisServer,
    free_port,
    python_module,
    wait_until,
)
from faceswap_jobs.producer.submit import Producer

CALLBACK_WAIT_S = 20.0
"""How long the drill's workers wait for a callback before resubmitting (default 300 s)."""
DEPLOY_GRACE_S = 60.0
"""What a deploy gives an old worker to finish (Kubernetes' terminationGracePeriodSeconds)."""
BILLED = ("success", "accepted")
AMBIGUOUS_CODES = frozenset(
    {"worker_lost", "read_timeout", "connection_reset", "soft_time_limit", "callback_lost"}
)
WORKER_ENV = {
    "FACESWAP_RATE_PER_S": "1000",
    "FACESWAP_RATE_FLOOR_PER_S": "100",
    "FACESWAP_MAX_IN_FLIGHT": "1000",
    "FACESWAP_MAX_ATTEMPTS": "10",
    "FACESWAP_BACKOFF_BASE_S": "0.2",
    "FACESWAP_BACKOFF_CAP_S": "2",
    "FACESWAP_RETRY_AFTER_CAP_S": "1",
    "FACESWAP_READ_TIMEOUT_S": "20",
    "FACESWAP_SOFT_TIME_LIMIT_S": "25",
    "FACESWAP_TIME_LIMIT_S": "30",
}
"""Defaults but for a limiter that never binds (the emulator is the only provider) and
timeouts short enough for a drill; the visibility timeout is the drill's to choose."""


@dataclass
class Drill:
    """The running system of one drill; a fault is a function of it."""

    redis: RedisServer
    emulator: Emulator
    producer: Producer
    logs: Path
    env: dict[str, str]
    worker_argv: list[str]
    workers: list[ManagedProcess] = field(default_factory=list)
    exits: list[tuple[str, int | None]] = field(default_factory=list)
    """(name, exit code) of workers that exited without the drill stopping them."""
    retired: list[ManagedProcess] = field(default_factory=list)
    receiver: ManagedProcess | None = None
    fault_at: float = 0.0
    fault_wall: float = 0.0
    _started: int = 0

    def start_worker(self) -> ManagedProcess:
        self._started += 1
        name = f"w{self._started}"
        argv = [*self.worker_argv, f"--hostname={name}@drill"]
        worker = ManagedProcess(name, argv, self.logs / f"{name}.log", self.env)
        self.workers.append(worker)
        wait_until(
            lambda: any(f"{name}@drill" in node for r in self.producer.app.control.ping(
                timeout=0.5) for node in r),
            60.0, f"worker {name}", worker.log_path,
        )  # fmt: skip
        return worker

    def start_receiver(self) -> None:
        """The callback receiver, on the port the workers name in their callback URLs."""
        port = self.env["FACESWAP_WEBHOOK_PORT"]
        argv = python_module("faceswap_jobs", "webhook")
        self.receiver = ManagedProcess("receiver", argv, self.logs / "receiver.log", self.env)
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/"), 30.0, "receiver", None)

    def retire(self, worker: ManagedProcess) -> ManagedProcess:
        """The drill stops this worker on purpose: its exit is not counted as a failure."""
        self.workers.remove(worker)
        self.retired.append(worker)
        return worker

    def check_workers(self) -> None:
        for worker in list(self.workers):
            if not worker.alive():
                self.exits.append((worker.name, worker.proc.returncode))
                self.workers.remove(worker)


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Callable[[Drill], None]
    jobs: int
    pool: str = "threads"
    concurrency: int = 64
    workers: int = 2
    latency_s: tuple[float, float] = (1.0, 3.0)
    faults: dict[str, float] = field(default_factory=dict)
    fault_after_calls: int = 0
    """The fault strikes once the emulator has seen this many calls (0: half the jobs)."""
    env: dict[str, str] = field(default_factory=dict)
    callback: bool = False
    give_up_s: float = 180.0


@dataclass
class DrillResult:
    scenario: str
    jobs: int
    succeeded: int
    failed: dict[str, int]
    lost: int
    stuck: dict[str, int]
    stuck_sample: list[str]
    """A few stuck jobs' ids, to look up in the worker logs."""
    calls: int
    billed_calls: int
    calls_per_success: float
    call_outcomes: dict[str, int]
    duplicates: int
    duplicates_explained: int
    unrecorded_calls: int
    finished_after_fault_s: float | None
    worker_exits: list[tuple[str, int | None]]
    redelivered_after_s: float | None = None
    """From the fault to the last interrupted call taken up again (its message redelivered)."""
    callbacks_undelivered: int | None = None
    """Callbacks the emulator could not deliver (callback drills): each costs a resubmission."""

    @property
    def held(self) -> bool:
        return (
            self.lost == 0
            and not self.stuck
            and self.unrecorded_calls == 0
            and self.duplicates == self.duplicates_explained
            and not self.worker_exits
        )

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "held": self.held}


def run(scenario: Scenario, workdir: Path) -> DrillResult:
    """Run `scenario` in `workdir` (emptied first: an old append-only file would bring back
    an earlier drill's jobs)."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    with system(scenario, workdir) as drill:
        ids = _submit(drill, scenario.jobs)
        threshold = scenario.fault_after_calls or scenario.jobs // 2
        wait_until(lambda: _calls(drill.emulator) >= threshold, 120.0, "calls", None)
        drill.fault_at, drill.fault_wall = time.monotonic(), time.time()
        scenario.fault(drill)
        finished_s = _wait_finished(drill, ids, scenario.give_up_s)
        drill.check_workers()
        records = _records(drill.producer, ids)
        ledger = drill.emulator.ledger()
        result = _account(scenario, records, ledger, finished_s, drill.exits)
        result.redelivered_after_s = _redelivered_after(records, drill.fault_wall)
        if scenario.callback:
            result.callbacks_undelivered = _undelivered_callbacks(drill.emulator)
        return result


@contextlib.contextmanager
def system(scenario: Scenario, workdir: Path) -> Iterator[Drill]:
    """Redis (append-only), the emulator and `scenario.workers` workers, stopped on exit."""
    token = f"drill-{secrets.token_hex(8)}"
    redis_dir = workdir / "redis"
    redis_dir.mkdir(exist_ok=True)
    server = RedisServer(redis_dir, aof=True)
    server.start()
    try:
        with emulator(token, rate_per_s=100_000, burst=100_000, logs=workdir) as emu:
            low, high = scenario.latency_s
            config = {"latency_min_s": low, "latency_max_s": high, **scenario.faults}
            requests.put(f"{emu.base_url}/_emulator/config", json=config, timeout=5)
            env = {**os.environ, **WORKER_ENV, **scenario.env, "FACESWAP_REDIS_URL": server.url,
                   "FACESWAP_API_BASE_URL": emu.base_url, "FACESWAP_API_TOKEN": token}  # fmt: skip
            receiver_port = free_port()
            if scenario.callback:
                env |= {"FACESWAP_CALLBACK_BASE_URL": f"http://127.0.0.1:{receiver_port}",
                        "FACESWAP_WEBHOOK_SECRET": secrets.token_urlsafe(32),
                        "FACESWAP_WEBHOOK_PORT": str(receiver_port),
                        "FACESWAP_CALLBACK_WAIT_S": str(CALLBACK_WAIT_S)}  # fmt: skip
            producer = Producer(Settings(redis_url=server.url))
            argv = python_module(
                "faceswap_jobs", "worker", f"--pool={scenario.pool}",
                f"--concurrency={scenario.concurrency}", "--loglevel=INFO",
            )  # fmt: skip
            drill = Drill(server, emu, producer, workdir, env, argv)
            try:
                if scenario.callback:
                    drill.start_receiver()
                for _ in range(scenario.workers):
                    drill.start_worker()
                yield drill
            finally:
                for worker in drill.workers + drill.retired:
                    worker.stop(grace_s=30.0)
                if drill.receiver is not None:
                    drill.receiver.stop()
    finally:
        server.stop()


def _submit(drill: Drill, count: int) -> list[str]:
    source, target = drill.emulator.sample("astronaut.png"), drill.emulator.sample("chelsea.png")
    return [drill.producer.submit_swap(f"{source}?job={i}", target).id for i in range(count)]


def _calls(emu: Emulator) -> int:
    response = requests.get(f"{emu.base_url}/_emulator/ledger", timeout=30)
    return len(response.json()["calls"])


def _records(producer: Producer, ids: list[str]) -> list[JobRecord | None]:
    for _ in range(60):
        with contextlib.suppress(Exception):
            return [producer.get_job(i) for i in ids]
        time.sleep(1.0)
    raise RuntimeError("Redis did not come back to read the jobs")


def _wait_finished(drill: Drill, ids: list[str], give_up_s: float) -> float | None:
    """Seconds from the fault until every job finished, or None when the drill gave up."""
    deadline = time.monotonic() + give_up_s
    pending = list(ids)
    while time.monotonic() < deadline:
        drill.check_workers()
        with contextlib.suppress(Exception):
            pending = [
                i for i in pending if not ((r := drill.producer.get_job(i)) and r.state.finished)
            ]
        if not pending:
            return time.monotonic() - drill.fault_at
        time.sleep(0.5)
    return None


def _account(
    scenario: Scenario,
    records: list[JobRecord | None],
    ledger: list[dict[str, Any]],
    finished_s: float | None,
    exits: list[tuple[str, int | None]],
) -> DrillResult:
    calls: collections.Counter[int] = collections.Counter()
    billed: collections.Counter[int] = collections.Counter()
    for call in ledger:
        job = int(call["request"]["source_image_url"].rsplit("=", 1)[1])
        calls[job] += 1
        billed[job] += call["outcome"] in BILLED
    succeeded = sum(1 for r in records if r and r.state == "succeeded")
    failed = collections.Counter(
        r.failure_reason or "?" for r in records if r and r.state == "failed"
    )
    stuck = collections.Counter(str(r.state) for r in records if r and not r.state.finished)
    duplicates = [i for i, n in billed.items() if n > 1]
    explained = sum(1 for i in duplicates if (r := records[i]) and _ambiguous_call(r))
    unrecorded = sum(max(0, calls[i] - (r.calls if r else 0)) for i, r in enumerate(records))
    return DrillResult(
        scenario=scenario.name,
        jobs=len(records),
        succeeded=succeeded,
        failed=dict(failed),
        lost=sum(1 for r in records if r is None),
        stuck=dict(stuck),
        stuck_sample=[r.id for r in records if r and not r.state.finished][:5],
        calls=len(ledger),
        billed_calls=sum(billed.values()),
        calls_per_success=round(len(ledger) / succeeded, 3) if succeeded else 0.0,
        call_outcomes=dict(collections.Counter(str(call["outcome"]) for call in ledger)),
        duplicates=len(duplicates),
        duplicates_explained=explained,
        unrecorded_calls=unrecorded,
        finished_after_fault_s=round(finished_s, 1) if finished_s is not None else None,
        worker_exits=exits,
    )


def _undelivered_callbacks(emu: Emulator) -> int:
    response = requests.get(f"{emu.base_url}/_emulator/callbacks", timeout=30)
    deliveries = response.json()["deliveries"]
    return sum(1 for d in deliveries if d["status"] is None or d["status"] >= 300)


def _redelivered_after(records: list[JobRecord | None], fault_wall: float) -> float | None:
    taken_up = [
        attempt.ended_at
        for record in records
        if record is not None
        for attempt in record.history
        if attempt.outcome == "interrupted" and attempt.ended_at is not None
    ]
    return round(max(taken_up) - fault_wall, 1) if taken_up else None


def _ambiguous_call(record: JobRecord) -> bool:
    for attempt in record.history:
        code = (attempt.error or {}).get("code")
        if attempt.outcome == "interrupted" or code in AMBIGUOUS_CODES:
            return True
    return False


def kill_worker(*, child: bool, replace_after_s: float = 2.0) -> Callable[[Drill], None]:
    """SIGKILL a worker's main process (the whole worker: its pool dies with it) or one of its
    pool processes (prefork); a supervisor starts a new worker `replace_after_s` later."""

    def fault(drill: Drill) -> None:
        worker = drill.workers[0]
        if child:
            os.kill(psutil.Process(worker.pid).children()[0].pid, signal.SIGKILL)
            return
        os.killpg(drill.retire(worker).pid, signal.SIGKILL)
        time.sleep(replace_after_s)
        drill.start_worker()

    return fault


def deploy(drill: Drill) -> None:
    """A rolling deploy: a new worker starts, the old one gets SIGTERM and must finish its
    running calls and exit 0 within the grace period."""
    old = drill.retire(drill.workers[0])
    drill.start_worker()
    os.kill(old.pid, signal.SIGTERM)
    try:
        old.proc.wait(DEPLOY_GRACE_S)
    except subprocess.TimeoutExpired:
        drill.exits.append((old.name, None))
        return
    if old.proc.returncode != 0:
        drill.exits.append((old.name, old.proc.returncode))


def restart_redis_twice(pause_s: float) -> Callable[[Drill], None]:
    """Redis stopped with SIGTERM and back after 5 s, then `pause_s` later killed with SIGKILL
    and back after 5 s: the acceptance drill of the reliability work."""

    def fault(drill: Drill) -> None:
        restart_redis(signal.SIGTERM, 5.0)(drill)
        time.sleep(pause_s)
        restart_redis(signal.SIGKILL, 5.0)(drill)

    return fault


def restart_receiver(down_s: float) -> Callable[[Drill], None]:
    """SIGKILL the callback receiver, keep it down `down_s`, start it again."""

    def fault(drill: Drill) -> None:
        assert drill.receiver is not None
        os.killpg(drill.receiver.pid, signal.SIGKILL)
        drill.receiver.stop()
        time.sleep(down_s)
        drill.start_receiver()

    return fault


def _answers(url: str) -> bool:
    """True once anything answers HTTP at `url` (the receiver answers 404 on `/`)."""
    return requests.get(url, timeout=1.0).status_code < 500


def restart_redis(sig: signal.Signals, down_s: float) -> Callable[[Drill], None]:
    """Stop Redis with `sig`, keep it down `down_s`, start it again on its port and data."""

    def fault(drill: Drill) -> None:
        drill.redis.stop(sig)
        time.sleep(down_s)
        drill.redis.start()

    return fault


DEFAULT_TIMEOUTS = {"FACESWAP_READ_TIMEOUT_S": "150", "FACESWAP_SOFT_TIME_LIMIT_S": "170",
                    "FACESWAP_TIME_LIMIT_S": "190"}  # fmt: skip
"""The shipped timeouts (and visibility timeout), for the drill that keeps every job in flight."""
VISIBILITY_S = 12
"""The drills' visibility timeout: short, so a dead worker's messages come back within one."""


def scenarios(jobs: int) -> dict[str, Scenario]:
    """Every drill, at `jobs` jobs each; the tests run a few at a small size, the bench all."""
    short = {"FACESWAP_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
             "FACESWAP_READ_TIMEOUT_S": "8", "FACESWAP_SOFT_TIME_LIMIT_S": "9",
             "FACESWAP_TIME_LIMIT_S": "10", "FACESWAP_MAX_COUNTDOWN_S": "10",
             "FACESWAP_RETRY_AFTER_CAP_S": "1", "FACESWAP_BACKOFF_CAP_S": "2",
             "FACESWAP_LEASE_TTL_S": "4"}  # fmt: skip
    fault_mix = {"fault_500": 0.1, "fault_429": 0.05, "fault_reset": 0.02}
    prefork: dict[str, Any] = {"pool": "prefork", "concurrency": 4, "latency_s": (0.5, 1.5),
                               "env": short}  # fmt: skip
    every = [
        Scenario("redis-sigterm", restart_redis(signal.SIGTERM, 5.0), jobs),
        Scenario("redis-sigkill", restart_redis(signal.SIGKILL, 5.0), jobs),
        Scenario("redis-twice-in-flight", restart_redis_twice(10.0), jobs,
                 concurrency=max(64, jobs // 2), latency_s=(20.0, 40.0),
                 fault_after_calls=jobs, env=DEFAULT_TIMEOUTS),
        Scenario("worker-sigkill-threads", kill_worker(child=False), jobs, env=short),
        Scenario("worker-sigkill-prefork", kill_worker(child=False), jobs, **prefork),
        Scenario("child-sigkill-prefork", kill_worker(child=True), jobs, **prefork),
        Scenario("deploy-sigterm", deploy, jobs, env=short),
        Scenario("fault-mix", lambda drill: None, jobs, faults=fault_mix),
        Scenario("receiver-restart", restart_receiver(10.0), jobs, callback=True, env=short),
    ]  # fmt: skip
    return {scenario.name: scenario for scenario in every}
