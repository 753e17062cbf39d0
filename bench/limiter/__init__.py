"""Rate-limit benchmark: our Redis limiter against Celery's `rate_limit`
(`python -m bench.limiter`).

`run` is the bench; `contenders` says who runs against what, `harness` what every run
shares (clean emulator and Redis, our workers, the wait loop), `scenarios` the breaker and
deadline runs and scenario 3's figures; `celery_baseline` is the Celery app its baseline
workers load (`celery -A bench.limiter.celery_baseline worker`), `plot` and `report` its PNG,
tables and goals. Nothing is imported here, so a baseline worker loads the app and not the
bench.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.limiter`: see `bench.limiter.run`; imported only when called."""
    from bench.limiter.run import main as run

    return run(argv)
