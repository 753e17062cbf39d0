"""What every CLI command shares: the consoles it prints to and settings read once, with a
configuration mistake reported as one line and exit code 2 instead of a traceback."""

from __future__ import annotations

import typer
from rich.console import Console

from faceswap_jobs.config import Settings

console = Console()
err_console = Console(stderr=True)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        err_console.print(f"[red]invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from None
