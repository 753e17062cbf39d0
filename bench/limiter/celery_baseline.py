"""The baseline: a plain Celery app written the way a typical user would, using Celery's own
`rate_limit`, so the bench compares our limiter with what people actually deploy.

Configured from the environment the bench sets (`BENCH_REDIS_URL`, `BENCH_API_BASE_URL`,
`BENCH_API_TOKEN`, `BENCH_RATE_LIMIT`); `celery -A bench.limiter.celery_baseline worker` imports
it.

One deliberate difference from the literal recipe: `max_retries=None` sits on the task, not only
in `self.retry(...)`. In `Task.retry`, `max_retries=None` means "the task's default" (3), so the
recipe alone would fail jobs after three 429s and the baseline would lose jobs for a reason
that has nothing to do with rate limiting.
"""

from __future__ import annotations

import os
from typing import Any

import requests
from celery import Celery, Task

app = Celery(
    "baseline", broker=os.environ["BENCH_REDIS_URL"], backend=os.environ["BENCH_REDIS_URL"]
)
app.conf.task_annotations = {"baseline.swap": {"rate_limit": os.environ["BENCH_RATE_LIMIT"]}}


@app.task(bind=True, name="baseline.swap", acks_late=True, max_retries=None)
def swap(self: Task, source: str, target: str) -> dict[str, Any]:
    """One swap; on 429 wait what the server says (Retry-After) and try again, forever."""
    response = requests.post(
        f"{os.environ['BENCH_API_BASE_URL']}/face/swap",
        json={"source_image_url": source, "target_image_url": target},
        headers={"authorization": f"Bearer {os.environ['BENCH_API_TOKEN']}"},
        timeout=30,
    )
    if response.status_code == 429:
        countdown = int(response.headers.get("Retry-After") or 1)
        raise self.retry(countdown=countdown, max_retries=None)
    response.raise_for_status()
    return response.json()
