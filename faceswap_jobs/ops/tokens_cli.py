"""`faceswap-jobs tokens list|retire|restore`: the pool's tokens, and taking one out of service.

Tokens are named by their id (a hash), never by the token: an operator needs no secret to see the
pool or to retire a token that leaked. Retiring reaches every worker within
`FACESWAP_TOKENS_RELOAD_S` (a second at most); calls already made with the token end as usual.
Adding a token needs the token itself: it goes into the tokens file (FACESWAP_API_TOKENS_FILE),
which the workers read again when it changes.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from faceswap_jobs.connections import redis_client
from faceswap_jobs.limits import LimitsSnapshot
from faceswap_jobs.limits.roster import Roster
from faceswap_jobs.ops.console import console, err_console, load_settings, shown

tokens_app = typer.Typer(help="The pool's tokens by id: list, retire, restore.")

TOKEN_ID = re.compile(r"[0-9a-f]{16}")
AsJson = Annotated[bool, typer.Option("--json", help="JSON instead of a table")]
TokenArg = Annotated[str, typer.Argument(help="the token's id (16 hex digits, as `list` shows)")]


def _roster() -> Roster:
    settings = load_settings()
    return Roster(settings, redis_client(settings))


def _checked(tid: str) -> str:
    if not TOKEN_ID.fullmatch(tid):
        err_console.print(Text.assemble(("not a token id (16 hex digits): ", "red"), shown(tid)))
        raise typer.Exit(2)
    return tid


def _row(snap: LimitsSnapshot) -> dict[str, object]:
    breaker = snap.breaker
    return {
        "token": snap.token_id,
        "in_service": not snap.retired,
        "weight": snap.weight,
        "ceiling_per_s": snap.ceiling_per_s,
        "effective_per_s": round(snap.pacing_per_s, 3),
        "in_flight": snap.in_flight,
        "max_in_flight": snap.max_in_flight,
        "breaker": breaker.state,
        "breaker_code": breaker.code,
        "published": snap.published,
    }


@tokens_app.command("list")
def list_tokens(as_json: AsJson = False) -> None:
    """Every token a worker holds (or this shell's settings name), with its state and limits."""
    rows = [_row(snap) for snap in _roster().snapshots()]
    if as_json:
        sys.stdout.write(json.dumps({"tokens": rows}) + "\n")
        return
    table = Table("token", "service", "weight", "rate/s", "in flight", "breaker")
    for row in rows:
        table.add_row(
            str(row["token"]),
            "in service" if row["in_service"] else Text("retired", "yellow"),
            f"{row['weight']:g}",
            f"{row['effective_per_s']:.2f} of {row['ceiling_per_s']:g}",
            f"{row['in_flight']} / {row['max_in_flight']}",
            Text.assemble(shown(str(row["breaker"])),
                          shown(f" ({row['breaker_code']})") if row["breaker_code"] else ""),
        )  # fmt: skip
    console.print(table)


@tokens_app.command()
def retire(token: TokenArg) -> None:
    """Take a token out of service: no new call goes with it, on any worker."""
    tid = _checked(token)
    roster = _roster()
    changed = roster.retire(tid)
    known = tid in roster.token_ids()
    note = "" if known else " (no worker holds it now; it stays retired if one does later)"
    console.print(f"token {tid} {'retired' if changed else 'was already retired'}{note}")


@tokens_app.command()
def restore(token: TokenArg) -> None:
    """Put a retired token back in service."""
    tid = _checked(token)
    changed = _roster().restore(tid)
    console.print(f"token {tid} {'back in service' if changed else 'was not retired'}")
