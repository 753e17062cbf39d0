"""The drill suite, full size: every fault the queue must ride through, one after another.

`python -m bench.drills [--jobs 1000] [--only NAME ...] [--out bench/results]`

Each drill runs `--jobs` jobs through two workers, a redis-server with an append-only file and
the emulator (calls of 1-3 s), strikes once half the jobs were called, and accounts for every
job and every billed call (`bench.common.drill`):

  redis-sigterm / redis-sigkill   Redis stopped (SIGTERM, then SIGKILL), back after 5 s
  worker-sigkill-threads/-prefork a whole worker killed, a new one started 2 s later
  child-sigkill-prefork           one pool process of a prefork worker killed
  deploy-sigterm                  a new worker starts, the old one gets SIGTERM
  fault-mix                       the emulator answers 10% 500s, 5% 429s, 2% resets

Goals, per drill: 0 jobs lost, 0 stuck, 0 calls the records do not show, every job billed
twice explained (`interrupted` or ambiguous), no worker exiting unless the drill stopped it.
Prints a table and writes `drills.json`; exits 1 when a drill did not hold.
"""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.table import Table

from bench.common.cli import bench_parser
from bench.common.drill import DrillResult, run, scenarios


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("bench.drills", __doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--only", action="append", default=[], help="run just these drills")
    args = parser.parse_args(argv)
    console = Console()
    chosen = {n: s for n, s in scenarios(args.jobs).items() if not args.only or n in args.only}
    results: list[DrillResult] = []
    for name, scenario in chosen.items():
        with console.status(f"drill {name}: {args.jobs} jobs"):
            results.append(run(scenario, args.out / "drills" / name))
        console.print(f"{name}: {'held' if results[-1].held else 'DID NOT HOLD'}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "drills.json").write_text(json.dumps([r.to_json() for r in results], indent=2))
    console.print(_table(results, args.jobs))
    return 0 if all(r.held for r in results) else 1


def _table(results: list[DrillResult], jobs: int) -> Table:
    table = Table(
        "drill", "lost", "stuck", "succeeded", "failed", "calls/success", "billed twice",
        "explained", "unrecorded", "all done after", "redelivered after", "worker exits",
        "held", title=f"drills, {jobs} jobs each",
    )  # fmt: skip
    for r in results:
        table.add_row(
            r.scenario, str(r.lost), str(sum(r.stuck.values())), str(r.succeeded),
            str(sum(r.failed.values())), f"{r.calls_per_success:.3f}", str(r.duplicates),
            str(r.duplicates_explained), str(r.unrecorded_calls),
            _seconds(r.finished_after_fault_s), _seconds(r.redelivered_after_s),
            str(len(r.worker_exits)), "yes" if r.held else "[red]no[/red]",
        )  # fmt: skip
    return table


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


if __name__ == "__main__":
    sys.exit(main())
