"""The scenarios that are not "drain the jobs and read the ledger": the breaker (a revoked token)
and the deadline; and scenario 3's figures (random 429s), computed from a drained run.

Every call figure still comes from the emulator's ledger; job figures from the job records.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis

from bench.common import analysis
from bench.limiter.contenders import BREAKER_TAG, Contender
from bench.limiter.harness import Bench, drain, ours_workers, sources, submit_numbered
from faceswap_jobs.keys import Keys
from faceswap_jobs.models import JobRecord, JobState

BREAKER_CAP_S = 45.0
"""Longest wait for every breaker job to be paused: below the breaker's 60 s cool-down, so
its probe call never falls inside the count."""
FAULT_429 = "fault_429"
DEADLINE_EXCEEDED = "deadline_exceeded"


def job_states(client: redis.Redis, keys: Keys, ids: Sequence[str]) -> Counter[str]:
    """How many of `ids` are in each state (one pipelined read); "missing" for no record."""
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(keys.job(job_id), "state")
    return Counter(_text(state) if state else "missing" for state in pipe.execute())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def run_breaker(bench: Bench, contender: Contender) -> dict[str, Any]:
    """Every call answers 401 invalid_token: how many calls until every job is paused."""
    with ours_workers(bench, contender) as ours:
        task = bench.progress.add_task(contender.name, total=contender.jobs)
        source, target = sources(bench)
        t0_s = time.time()
        ids = [
            ours.producer.submit_swap(f"{source}?tag={BREAKER_TAG}&i={i}", target).id
            for i in range(contender.jobs)
        ]

        def paused() -> int:
            return job_states(ours.producer.redis, ours.keys, ids)[JobState.PAUSED.value]

        cap_s = min(bench.cap_s, BREAKER_CAP_S)
        capped = drain(bench, task, paused, contender.jobs, t0_s, cap_s=cap_s)
        waited_s = time.time() - t0_s
        ledger = bench.emulator.ledger()  # counted before the workers stop
        states = job_states(ours.producer.redis, ours.keys, ids)
        bench.progress.stop_task(task)
    return {
        "capped": capped,
        "cap_s": cap_s,
        "all_paused_s": None if capped else waited_s,
        "paused": states[JobState.PAUSED.value],
        "states": dict(states),
        "calls": len(ledger),
        "outcomes": dict(Counter(str(e["outcome"]) for e in ledger)),
        "first_calls_s": sorted(round(float(e["time"]) - t0_s, 3) for e in ledger)[:10],
    }


def run_deadline(bench: Bench, contender: Contender) -> dict[str, Any]:
    """Jobs that cannot all be served before their deadline: does any call start after it?"""
    with ours_workers(bench, contender) as ours:
        jobs = submit_numbered(bench, ours, contender)
        task, t0_s, ids, tracker = jobs.task, jobs.t0_s, jobs.ids, jobs.tracker
        capped = drain(bench, task, lambda: tracker.poll().finished, contender.jobs, t0_s)
        bench.progress.stop_task(task)
        records = [ours.producer.get_job(job_id) for job_id in ids]
    tally = tracker.poll()
    assert contender.deadline_s is not None
    return {
        "capped": capped,
        "finished": tally.finished,
        "wall_s": None if capped or tally.last_finish_s is None else tally.last_finish_s - t0_s,
        **deadline_figures(records, bench.emulator.ledger(), contender.deadline_s),
    }


def deadline_figures(
    records: Sequence[JobRecord | None], ledger: Iterable[Mapping[str, Any]], deadline_s: float
) -> dict[str, Any]:
    """Calls after their job's deadline (created_at + deadline_s), matched to jobs by `?i=`."""
    lateness = []  # seconds after the deadline (negative: before it), one per matched call
    entries = list(ledger)
    for entry in entries:
        i = job_index(entry)
        record = records[i] if i is not None and 0 <= i < len(records) else None
        if record is not None:
            lateness.append(float(entry["time"]) - (record.created_at + deadline_s))
    states = Counter(r.state.value if r else "missing" for r in records)
    codes = Counter(
        (r.last_error or {}).get("code") for r in records if r and r.state == JobState.FAILED
    )
    return {
        "calls": len(entries),
        "unmatched_calls": len(entries) - len(lateness),
        "late_calls": sum(late > 0 for late in lateness),
        "latest_call_vs_deadline_s": max(lateness, default=None),
        "succeeded": states[JobState.SUCCEEDED.value],
        "failed_deadline": codes[DEADLINE_EXCEEDED],
        "failed_other": sum(codes.values()) - codes[DEADLINE_EXCEEDED],
        "states": dict(states),
    }


def job_index(entry: Mapping[str, Any]) -> int | None:
    """The bench's `?i=` job number from a ledger entry's source URL; None when absent."""
    request = entry.get("request") or {}
    url = request.get("source_image_url") if isinstance(request, dict) else None
    values = parse_qs(urlsplit(url).query).get("i") if isinstance(url, str) else None
    return int(values[0]) if values and values[0].isdigit() else None


def noise_figures(
    contender: Contender,
    calls: Sequence[analysis.Call],
    t0_s: float,
    wall_s: float | None,
    rate_samples: Sequence[tuple[float, float]],
) -> dict[str, Any]:
    """Scenario 3: successes per second over the whole run (first submit to last finish; to the
    last call when capped), 429s of any kind, and how close to (1 - noise) x configured."""
    successes = sum(c.outcome == analysis.SUCCESS for c in calls)
    refused = sum(c.outcome in (analysis.RATE_LIMITED, FAULT_429) for c in calls)
    span_s = wall_s if wall_s is not None else (calls[-1].time_s - t0_s if calls else 0.0)
    per_s = successes / span_s if span_s > 0 else 0.0
    ideal = (1 - contender.fault_429) * float(contender.setting)
    rates = [rate for _, rate in rate_samples]
    return {
        "noise_share": contender.fault_429,
        "successes_per_s": per_s,
        "share_429": analysis.share(refused, len(calls)),
        "fault_429s": sum(c.outcome == FAULT_429 for c in calls),
        "successes_per_s_over_ideal": per_s / ideal,
        "min_effective_rate": min(rates, default=None),
    }
