"""Scenario C of the in-flight bench: the receiver alone, seeded with waiting jobs."""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.inflight.contenders import PACKAGE, Bench, fresh_prefix, our_env
from bench.inflight.finishes import job_states
from bench.inflight.procs import code_fingerprint, log_problems, log_size, receiver
from bench.inflight.receiver_load import callbacks_for, offer, seed_waiting_jobs
from bench.inflight.report import receiver_figures
from bench.inflight.usage import Usage
from faceswap_jobs.celery_app import create_app
from faceswap_jobs.config import Settings
from faceswap_jobs.keys import Keys
from faceswap_jobs.limits import token_id
from faceswap_jobs.worker.runtime import Runtime

SAMPLE_S = 1.0


def run_receiver(bench: Bench, rate_per_s: float, seconds: float, workers: int) -> dict[str, Any]:
    """Scenario C: seed waiting jobs, offer their callbacks open-loop, check every job."""
    prefix = fresh_prefix(bench.redis_url, "C")
    count = round(rate_per_s * seconds)
    settings = Settings(
        redis_url=bench.redis_url,
        key_prefix=prefix,
        api_token=bench.token,
        webhook_secret=bench.secret,
        max_in_flight=count + 100,
        callback_wait_s=3600.0,
    )
    log_path = bench.logs / "inflight-C-receiver.log"
    code = code_fingerprint(PACKAGE)
    with receiver(our_env(bench, prefix), log_path, workers) as (url, process):
        rt = Runtime.build(settings, create_app(settings))
        task = bench.progress.add_task("C-receiver", total=count, info="seeding waiting jobs")
        ids = seed_waiting_jobs(rt, count, token_id(bench.token), settings.callback_wait_s)
        callbacks = callbacks_for(url, bench.secret, ids)
        usage = Usage({"receiver": process.pid})
        usage.mark()
        done = threading.Event()
        sampler = threading.Thread(target=_sample_until, args=(usage, done), daemon=True)
        sampler.start()
        bench.progress.update(task, info=f"offering {rate_per_s:g}/s")
        cpu0 = time.process_time()
        answers, schedule_lag_s = offer(
            callbacks, rate_per_s, lambda n: bench.progress.update(task, completed=n)
        )
        client_cpu_s = time.process_time() - cpu0
        done.set()
        sampler.join()
        cpu_s = usage.cpu_s()
        log_end = log_size(log_path)
        states = job_states(rt.redis, Keys(prefix), ids)
        rt.redis.close()
        bench.progress.stop_task(task)
    figures = receiver_figures(answers, rate_per_s)
    return {
        "code": code,
        **figures,
        "jobs": count,
        "receiver_workers": workers,
        "job_states": states,
        "peak_rss_mb": usage.peak_total_rss_mb,
        "cpu_s": cpu_s,
        "cpu_s_per_1000": cpu_s / count * 1000,
        "client_cpu_s": client_cpu_s,
        "max_schedule_lag_ms": schedule_lag_s * 1000,
        "log_problems": {"receiver": log_problems(log_path, log_end)},
    }


def _sample_until(usage: Usage, done: threading.Event) -> None:
    while not done.wait(SAMPLE_S):
        usage.sample()
