"""The module-level app Celery's own command line looks for: `celery -A faceswap_jobs inspect ping`
(also `control`, `events`, `purge`, `status`, `worker`).

Celery's `-A faceswap_jobs` finds no `app` on the package and imports this module; the app is
built from `FACESWAP_*` settings on first access of `app`, so importing this module reads no
settings and connects nowhere. Application code never uses it: it sends through
`faceswap_jobs.producer`, which loads no worker code.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery


def __getattr__(name: str) -> Any:
    if name == "app":
        return _app()
    raise AttributeError(f"module 'faceswap_jobs.celery' has no attribute {name!r}")


@cache
def _app() -> Celery:
    """The worker's app (task, scheduler bootstep, tuning), as `faceswap-jobs worker` builds it."""
    from faceswap_jobs.config import Settings
    from faceswap_jobs.worker.app import worker_app

    return worker_app(Settings())
