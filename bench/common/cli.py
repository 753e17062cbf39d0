"""How every bench reads its command line and where it writes: `python -m bench.NAME --help`
shows the module's docstring as written (its scenario, contenders and an example command), and
every bench takes `--out` (default `bench/results`, relative: run from the repository root)."""

from __future__ import annotations

import argparse
from pathlib import Path


def bench_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """A parser for `python -m {module}`, described by `doc` (the module's `__doc__`)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="results dir")
    return parser
