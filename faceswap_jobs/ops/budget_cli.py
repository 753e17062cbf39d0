"""`faceswap-jobs budget show|set|raise|clear|resume`: call budgets per day, queue and batch.

Caps are kept in calls; with `FACESWAP_PRICE_PER_CALL` set, `--money` gives one in money
(the whole calls it pays for) and `show` adds the money columns. Jobs paused by a spent budget
go back to their queue as soon as it has room: these commands release them at once, and every
worker's scheduler does within a second.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from faceswap_jobs.config import Settings
from faceswap_jobs.connections import redis_client
from faceswap_jobs.keys import Keys
from faceswap_jobs.limits.budget import Budget, Usage, calls_for_money, parse_scope
from faceswap_jobs.ops.console import console, err_console, load_settings, shown

budget_app = typer.Typer(
    help="Call budgets per day, queue and batch: show, set, raise, clear; resume paused jobs."
)

RELEASE_BATCH = 1000

ScopeArg = Annotated[
    str, typer.Argument(help="day, day:YYYY-MM-DD (UTC), queue:NAME or batch:NAME")
]
Calls = Annotated[int | None, typer.Option("--calls", min=0, help="the cap in calls")]
Money = Annotated[
    str | None,
    typer.Option("--money", help="an amount of money (needs FACESWAP_PRICE_PER_CALL)"),
]
AsJson = Annotated[bool, typer.Option("--json", help="JSON instead of a table")]


def _budget(settings: Settings) -> Budget:
    return Budget(redis_client(settings), Keys(settings.key_prefix), settings.budget_warn_share,
                  settings.job_ttl_s)  # fmt: skip


def queue_scopes(settings: Settings) -> list[str]:
    """The workers' queues, shown whether or not they have a cap."""
    return [f"queue:{settings.interactive_queue}", f"queue:{settings.bulk_queue}"]


def _scope(text: str) -> str:
    try:
        return parse_scope(text)
    except ValueError as exc:
        err_console.print(Text.assemble(("invalid scope: ", "red"), shown(exc)))
        raise typer.Exit(2) from None


def _calls(settings: Settings, calls: int | None, money: str | None) -> int:
    """The cap or raise in calls, from exactly one of `--calls` (`--by`) and `--money`."""
    if calls is not None and money is None:
        return calls
    if calls is not None or money is None:
        err_console.print("[red]give a number of calls or --money, not both[/red]")
        raise typer.Exit(2)
    price = settings.price_per_call
    if price is None:
        err_console.print("[red]--money needs FACESWAP_PRICE_PER_CALL (what one call costs)[/red]")
        raise typer.Exit(2)
    try:
        return calls_for_money(Decimal(money), price)
    except ValueError as exc:
        err_console.print(Text.assemble(("invalid amount: ", "red"), shown(exc)))
    except ArithmeticError:
        err_console.print(Text.assemble(("not an amount: ", "red"), shown(money)))
    raise typer.Exit(2)


def _release(budget: Budget) -> int:
    released = 0
    while moved := sum(budget.release(RELEASE_BATCH).values()):
        released += moved
    return released


def _as_json(usage: Usage, price: Decimal | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "scope": usage.scope,
        "spent_calls": usage.spent,
        "cap_calls": usage.cap,
        "share": usage.share,
        "waiting_jobs": usage.waiting,
    }
    if price is not None:
        row["spent_money"] = str(usage.spent * price)
        row["cap_money"] = None if usage.cap is None else str(usage.cap * price)
    return row


@budget_app.command()
def show(as_json: AsJson = False) -> None:
    """Today, each queue and every capped scope: calls spent, cap, share and jobs waiting."""
    settings = load_settings()
    price = settings.price_per_call
    rows = _budget(settings).usage(queue_scopes(settings))
    if as_json:
        sys.stdout.write(json.dumps([_as_json(u, price) for u in rows]) + "\n")
        return
    table = Table("scope", "spent", "cap", "share", "waiting")
    if price is not None:
        table.add_column("spent money")
        table.add_column("cap money")
    for usage in rows:
        share = usage.share
        cells: list[str | Text] = [
            shown(usage.scope),
            str(usage.spent),
            "unlimited" if usage.cap is None else str(usage.cap),
            "-" if share is None else Text(f"{share:.0%}", "red" if usage.exhausted else ""),
            str(usage.waiting),
        ]
        if price is not None:
            cap = "-" if usage.cap is None else str(usage.cap * price)
            cells += [str(usage.spent * price), cap]
        table.add_row(*cells)
    console.print(table)


@budget_app.command("set")
def set_cap(scope: ScopeArg, calls: Calls = None, money: Money = None) -> None:
    """Cap a scope (`day` caps every day) in calls, or in money at FACESWAP_PRICE_PER_CALL."""
    settings = load_settings()
    name, cap = _scope(scope), _calls(settings, calls, money)
    budget = _budget(settings)
    budget.set_cap(name, cap)
    released = _release(budget)
    console.print(Text.assemble(shown(name), f" capped at {cap} calls; {released} paused job(s) "
                                "released"))  # fmt: skip


@budget_app.command("raise")
def raise_cap(
    scope: ScopeArg,
    by: Annotated[int | None, typer.Option("--by", min=0, help="calls to add")] = None,
    money: Money = None,
) -> None:
    """Add calls (or money) to a scope's cap and let its paused jobs go."""
    settings = load_settings()
    name, more = _scope(scope), _calls(settings, by, money)
    budget = _budget(settings)
    try:
        cap = budget.raise_cap(name, more)
    except ValueError as exc:
        err_console.print(Text.assemble(("cannot raise: ", "red"), shown(exc)))
        raise typer.Exit(2) from None
    released = _release(budget)
    console.print(Text.assemble(shown(name), f" now capped at {cap} calls; {released} paused "
                                "job(s) released"))  # fmt: skip


@budget_app.command()
def clear(scope: ScopeArg) -> None:
    """Remove a scope's cap (unlimited again; a day falls back to `day`'s cap)."""
    settings = load_settings()
    name = _scope(scope)
    budget = _budget(settings)
    budget.set_cap(name, None)
    released = _release(budget)
    console.print(Text.assemble(shown(name), f" has no cap of its own; {released} paused job(s) "
                                "released"))  # fmt: skip


@budget_app.command()
def resume() -> None:
    """Send back every job paused by a budget that has room now (workers do so too)."""
    settings = load_settings()
    budget = _budget(settings)
    budget.rediscover_waiting()
    released = _release(budget)
    still = sum(u.waiting for u in budget.usage())
    console.print(f"{released} paused job(s) released; {still} still wait for a budget")
