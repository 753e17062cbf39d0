"""`worker_app(settings)`: the Celery app a worker runs, the same for `faceswap-jobs worker` and
`celery -A faceswap_jobs worker`.

The producer's app (`create_app`) only sends by task name; a worker's app also registers the swap
task, the scheduler bootstep and the measured tuning, and takes its pool and size from settings,
so a worker started by plain `celery` runs exactly what ours runs.
"""

from __future__ import annotations

from celery import Celery

from faceswap_jobs.celery_app import create_app
from faceswap_jobs.config import Settings
from faceswap_jobs.logformat import use_log_format
from faceswap_jobs.worker import task  # noqa: F401 - registers the swap task with every app
from faceswap_jobs.worker.scheduler import SchedulerStep
from faceswap_jobs.worker.tuning import tune_worker


def worker_app(settings: Settings) -> Celery:
    app = create_app(settings)
    # What `celery worker` runs without --pool/--concurrency. Celery reads `--pool=prefork` as
    # its default and runs this pool instead, so a prefork worker sets FACESWAP_WORKER_POOL.
    app.conf.update(worker_pool=settings.worker_pool, worker_concurrency=settings.concurrency)
    tune_worker(app)
    use_log_format(settings)
    app.steps["worker"].add(SchedulerStep)
    return app
