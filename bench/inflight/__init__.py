"""Calls in flight: how many minute-long swaps each way of running our task code keeps
going (`python -m bench.inflight`).

`run` is the bench (scenarios A and B), `receiver` scenario C with `receiver_load` its load
generator; `contenders` says who runs with which settings, `procs` starts the slow emulator
and the receiver, `finishes`, `usage` and `flight` measure, `report` judges and plots.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.inflight`: see `bench.inflight.run`; imported only when called."""
    from bench.inflight.run import main as run

    return run(argv)
