"""Interactive queue wait behind a bulk backlog: our two queues against one shared queue
(`python -m bench.isolation`).

`run` is the bench.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.isolation`: see `bench.isolation.run`; imported only when called."""
    from bench.isolation.run import main as run

    return run(argv)
