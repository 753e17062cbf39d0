"""What a worker process changes in Celery's defaults, measured, so one process holds thousands of
calls and submits a hundred jobs a second.

Both changes are about the cost of a job that does little CPU work of its own: a callback-mode
submission, or a job parked until its rate slot comes.
"""

from __future__ import annotations

import sys
from types import TracebackType

from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
from celery import Celery
from celery.app import trace
from celery.exceptions import Ignore


class SemiPredicateInfo(ExceptionInfo):
    """`ExceptionInfo` that does not copy the traceback of an `Ignore`.

    Our task ends with `Ignore` whenever it hands a job on (submitted in callback mode, parked for
    later, dropped from a cancelled batch). Celery wraps that in `ExceptionInfo` twice per job, and
    billiard copies every instruction position of every frame, Celery's large tracer included:
    41% of a callback-mode worker's CPU, measured with py-spy. Celery logs an ignored task
    without its traceback, so nothing reads the copy; any other exception keeps it in full.
    """

    def __init__(
        self,
        exc_info: tuple[type[BaseException], BaseException, TracebackType | None] | None = None,
        internal: bool = False,
    ) -> None:
        type_, exception, tb = exc_info or sys.exc_info()
        if not isinstance(exception, Ignore):
            super().__init__((type_, exception, tb), internal)
            return
        self.type, self.tb, self.traceback, self.internal = type_, None, "", internal
        self.exception = ExceptionWithTraceback(exception, "")


def tune_worker(app: Celery) -> None:
    """Apply both changes; call before the worker starts its pool."""
    # Celery gives every thread its own result backend (client, pool, connection): ~45 KB and a
    # Redis connection per thread of a 1,600-thread pool. Its Redis client is thread-safe; the
    # one part that is not, the pub/sub result consumer, is only used by the scheduler thread.
    app.conf.result_backend_thread_safe = True
    trace.ExceptionInfo = SemiPredicateInfo
