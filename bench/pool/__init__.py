"""Token-pool benchmark: several API tokens, each with its own provider limit, spread over by
our workers (`python -m bench.pool`).

`run` is the bench; `contenders` says who runs with which tokens, `harness` what every run
shares (a clean emulator and Redis, our workers, the wait loop and the mid-run revocation),
`figures` the per-token and after-revocation arithmetic over the emulator's ledger, `plot` and
`report` its PNG, tables and goals.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.pool`: see `bench.pool.run`; imported only when called."""
    from bench.pool.run import main as run

    return run(argv)
