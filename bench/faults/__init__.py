"""Fault drill: every call of 200 jobs through a faulty emulator accounted for
(`python -m bench.faults`).

`run` is the drill.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.faults`: see `bench.faults.run`; imported only when called."""
    from bench.faults.run import main as run

    return run(argv)
