"""`faceswap-jobs spend`: what the API calls cost, by token, queue or batch, from the counters.

Every figure comes from counters the ending script bumps once per call (`jobs.spend`): the
global view reads one hash per UTC day since `--since`, a batch's view one hash, so the report
costs the same for ten calls or ten million. Billed and possibly billed follow `jobs.billing`.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any

import typer
from rich.table import Table

from faceswap_jobs.connections import redis_client
from faceswap_jobs.jobs.billing import RepeatCause
from faceswap_jobs.jobs.spend import Spend, SpendReport, read_batch, read_days, spend_days
from faceswap_jobs.keys import Keys
from faceswap_jobs.ops.console import console, err_console, load_settings, shown
from faceswap_jobs.validation import check_batch_name

COLUMNS = ("calls", "succeeded", "billed", "possibly billed", "not billed", "calls/success",
           *(f"repeats: {cause}" for cause in RepeatCause))  # fmt: skip


def spend_command(
    batch: Annotated[str | None, typer.Option(help="only this batch's calls")] = None,
    since: Annotated[
        str | None, typer.Option(help="from this UTC day on (YYYY-MM-DD); default: every day kept")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Calls by outcome, billed and possibly billed calls, calls per success and why jobs were
    called again, in total and per token and queue (globally, or for one batch)."""
    settings = load_settings()
    first_day = _day(since) if since else None
    if batch is not None and first_day is not None:
        err_console.print("--batch covers the batch's whole life: give --batch or --since")
        raise typer.Exit(2)
    client = redis_client(settings)
    keys = Keys(settings.key_prefix)
    if batch is not None:
        name = _batch_name(batch)
        if not client.exists(keys.batch(name)):
            err_console.print(shown(f"no batch named {name!r}"), style="red")
            raise typer.Exit(1)
        scope: dict[str, Any] = {"batch": name}
        report = read_batch(client, keys, name)
    else:
        days = spend_days(client, keys, first_day)
        report = read_days(client, keys, first_day)
        scope = {"since": (first_day or (days[0] if days else None)), "days": len(days)}
    if as_json:
        out: dict[str, Any] = {"scope": {k: _plain(v) for k, v in scope.items()}}
        console.print_json(json.dumps(out | report.as_dict()))
        return
    _print(report, scope)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        err_console.print(shown(f"--since must be a day as YYYY-MM-DD, not {text!r}"), style="red")
        raise typer.Exit(2) from None


def _batch_name(text: str) -> str:
    try:
        return check_batch_name(text)
    except ValueError as exc:
        err_console.print(shown(exc), style="red")
        raise typer.Exit(2) from None


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def _print(report: SpendReport, scope: dict[str, Any]) -> None:
    if "batch" in scope:
        title = f"calls of batch {scope['batch']}"
    elif scope["days"]:
        title = f"calls since {scope['since']} (UTC, {scope['days']} day(s) with calls)"
    else:
        title = "no calls counted" + (f" since {scope['since']}" if scope["since"] else "")
    table = Table("scope", *COLUMNS, title=shown(title))
    table.add_row("all", *_cells(report.total))
    for token, spend in sorted(report.by_token.items()):
        table.add_row(shown(f"token {token}"), *_cells(spend))
    for queue, spend in sorted(report.by_queue.items()):
        table.add_row(shown(f"queue {queue}"), *_cells(spend))
    console.print(table)
    outcomes = ", ".join(f"{n} {o}" for o, n in sorted(report.total.calls.items()))
    console.print(shown(f"calls by outcome: {outcomes or 'none'}"))


def _cells(spend: Spend) -> list[str]:
    per_success = spend.calls_per_success
    return [
        f"{spend.total_calls:,}",
        f"{spend.successes:,}",
        f"{spend.billed:,}",
        f"{spend.possibly_billed:,}",
        f"{spend.not_billed:,}",
        f"{per_success:.3f}" if per_success is not None else "-",
        *(f"{spend.repeats.get(cause, 0):,}" for cause in RepeatCause),
    ]
