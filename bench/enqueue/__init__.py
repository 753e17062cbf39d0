"""Enqueue throughput and Redis memory per queued job: stock Celery against our bulk
enqueuer (`python -m bench.enqueue`).

`run` is the bench; `support` measures (rows, Redis memory, message checks, redis-benchmark,
the backfill subprocess) for it and for `bench.isolation`.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.enqueue`: see `bench.enqueue.run`; imported only when called."""
    from bench.enqueue.run import main as run

    return run(argv)
