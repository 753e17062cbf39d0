"""What every CLI command shares: the consoles it prints to and settings read once, with a
configuration mistake reported as one line and exit code 2 instead of a traceback.

Exit codes: 0 done; 1 the job failed, is unknown or did not finish in time; 2 invalid input or
configuration; 3 Redis could not be reached (`cannot reach Redis at ...`)."""

from __future__ import annotations

import os
import sys

import typer
from celery import Celery
from rich.console import Console
from rich.text import Text

from faceswap_jobs.config import Settings

PIPED_WIDTH = 1000
"""Output read by a program or saved to a file is not cut or folded at 80 columns (job ids,
URLs and batch names stay whole); a terminal keeps its own width."""


def _console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPED_WIDTH
    return Console(stderr=stderr, width=width)


console = _console()
err_console = _console(stderr=True)


EXIT_UNAVAILABLE = 3
COMMAND_REDIS_RETRY_S = 5.0
"""An operator's one-off command waits this long for Redis (unless FACESWAP_REDIS_RETRY_S says
otherwise); services and backfills ride through a restart with the full budget."""


def load_settings(*, service: bool = False) -> Settings:
    try:
        settings = Settings()
    except ValueError as exc:
        err_console.print(f"[red]invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from None
    if service or "FACESWAP_REDIS_RETRY_S" in os.environ:
        return settings
    return settings.model_copy(update={"redis_retry_s": COMMAND_REDIS_RETRY_S})


def run_celery(app: Celery, argv: list[str]) -> int:
    """Run a `celery` command for `app`; returns its exit code, which `Celery.start` drops (a
    worker that dies on an unrecoverable error would otherwise exit 0, and no supervisor
    would restart it)."""
    from celery.bin.celery import celery

    celery.params[0].default = app
    try:
        return int(celery.main(args=argv, standalone_mode=False) or 0)
    finally:
        celery.params[0].default = None


def printable(text: str) -> str:
    """`text` with control characters (terminal escapes, newlines) shown as `?`."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def shown(value: object) -> Text:
    """Untrusted text (API answers, callback bodies, job and batch fields) for a rich table or
    line: never read as markup (`[/]` crashed `dlq`; `[link=...]` made a link), control
    characters (terminal escapes) shown as `?`."""
    return Text(printable(str(value)))
