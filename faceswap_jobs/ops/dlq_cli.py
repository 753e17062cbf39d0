"""`faceswap-jobs dlq list|show|replay|purge`: the dead-letter queue from the command line.

A table for a terminal; piped, `list` writes one tab-separated line per job, never cut to the
terminal's width; `--json` writes JSON lines. Untrusted text (error messages, ids, batch names)
is shown as text, never as markup or terminal escapes.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich import box
from rich.table import Column, Table
from rich.text import Text

from faceswap_jobs.connections import redis_client
from faceswap_jobs.jobs.store import JobStore, job_store
from faceswap_jobs.models import JobRecord
from faceswap_jobs.ops.console import console, err_console, load_settings, printable, shown
from faceswap_jobs.ops.dead_letters import (
    DeadLetter,
    Selection,
    age,
    dead_letters,
    iso,
    parse_since,
)
from faceswap_jobs.producer.replay import FailedJobs

dlq_app = typer.Typer(help="The dead-letter queue: list, show, replay and purge failed jobs.")

Code = Annotated[
    str | None, typer.Option("--code", help="only this error code (bad_request) or HTTP status")
]
BatchName = Annotated[str | None, typer.Option("--batch", help="only this batch's jobs")]
Since = Annotated[
    str | None,
    typer.Option("--since", help="failed since: a duration back (30m, 2h, 1d) or an ISO time"),
]
AsJson = Annotated[bool, typer.Option("--json", help="JSON lines, one object per job")]
JobIds = Annotated[
    list[str] | None, typer.Argument(help="these jobs (instead of --code/--batch/--since)")
]
Limit = Annotated[int | None, typer.Option(min=1, help="act on at most this many (newest first)")]


@dlq_app.callback(invoke_without_command=True)
def dlq(ctx: typer.Context) -> None:
    """`faceswap-jobs dlq` alone is `faceswap-jobs dlq list`."""
    if ctx.invoked_subcommand is None:
        list_failed()


@dlq_app.command("list")
def list_failed(
    code: Code = None,
    batch: BatchName = None,
    since: Since = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 50,
    as_json: AsJson = False,
) -> None:
    """Failed jobs, most recent first, with error code, message and trace_id.

    Piped, one tab-separated line per job: failed_at, job id, code, status, batch, row id,
    attempts, calls, trace_id, message."""
    store = _store()
    letters = list(dead_letters(store, _selection(code, batch, since), limit))
    if as_json:
        sys.stdout.writelines(json.dumps(letter.as_json()) + "\n" for letter in letters)
    elif not console.is_terminal:
        sys.stdout.writelines(_tsv(letter) + "\n" for letter in letters)
    else:
        console.print(_table(letters, store.client.zcard(store.keys.dead_letters)))


@dlq_app.command()
def show(job_id: str, as_json: AsJson = False) -> None:
    """A failed job in full: request, metadata, every attempt with its error, why it failed."""
    store = _store()
    record = store.get(job_id)
    if record is None:
        err_console.print(Text.assemble(("job ", "red"), shown(job_id),
                                        (" is unknown or has expired", "red")))  # fmt: skip
        raise typer.Exit(1)
    failed_at = store.failed_at(job_id)
    if as_json:
        data = record.model_dump(mode="json") | {"failed_at": iso(failed_at)}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    _print_failure(record, failed_at)


@dlq_app.command()
def replay(
    job_ids: JobIds = None,
    code: Code = None,
    batch: BatchName = None,
    since: Since = None,
    limit: Limit = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count, send nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the counts as JSON")] = False,
) -> None:
    """Send failed jobs again, each with a fresh retry budget and its history kept.

    Only a job that is still `failed` is sent, so replaying a job twice sends it once."""
    settings = load_settings()
    client = redis_client(settings)
    store = job_store(settings, client)
    ids = _chosen(store, job_ids, code, batch, since, limit)
    if dry_run:
        _report(as_json, {"matched": len(ids)}, f"{len(ids)} job(s) match; nothing sent")
        return
    done = FailedJobs(settings, client).resend(ids)
    _report(as_json, {"sent": done.sent, "skipped": done.skipped},
            f"{done.sent} job(s) sent again; {done.skipped} skipped "
            "(not failed any more, or gone)")  # fmt: skip


@dlq_app.command()
def purge(
    job_ids: JobIds = None,
    code: Code = None,
    batch: BatchName = None,
    since: Since = None,
    limit: Limit = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the count as JSON")] = False,
) -> None:
    """Take failed jobs out of the dead-letter queue (asks first unless --yes).

    Their records stay, still `failed`, for `status`, exports and batch counts, and expire as
    any ended job's; `dlq replay JOB_ID` still sends one again."""
    store = _store()
    if job_ids:
        _no_filters(code, batch, since, limit)
        found = ((job_id, store.failed_at(job_id)) for job_id in dict.fromkeys(job_ids))
        entries = [(job_id, at) for job_id, at in found if at is not None]
    else:
        selection = _selection(code, batch, since)
        entries = [(d.id, d.failed_at) for d in dead_letters(store, selection, limit)]
    if not entries:
        _report(as_json, {"removed": 0}, "nothing to purge")
        return
    if not yes:
        typer.confirm(
            f"take {len(entries)} failed job(s) out of the dead-letter queue?", abort=True, err=True
        )
    removed = store.forget_dead_letters(entries)
    _report(as_json, {"removed": removed},
            f"{removed} failed job(s) taken out of the dead-letter queue")  # fmt: skip


def _store() -> JobStore:
    settings = load_settings()
    return job_store(settings, redis_client(settings))


def _selection(code: str | None, batch: str | None, since: str | None) -> Selection:
    try:
        moment = None if since is None else parse_since(since, time.time())
    except ValueError as exc:
        raise typer.BadParameter(printable(str(exc)), param_hint="'--since'") from None
    return Selection(code=code, batch=batch, since=moment)


def _no_filters(*filters: object) -> None:
    if any(f is not None for f in filters):
        raise typer.BadParameter("give job ids or filters (--code, --batch, --since, --limit)")


def _chosen(
    store: JobStore,
    job_ids: list[str] | None,
    code: str | None,
    batch: str | None,
    since: str | None,
    limit: int | None,
) -> list[str]:
    """Explicit ids (in the queue or not: a purged failure can still be replayed), each once; or
    the ids the filters pick from the queue."""
    if job_ids:
        _no_filters(code, batch, since, limit)
        return list(dict.fromkeys(job_ids))
    return [d.id for d in dead_letters(store, _selection(code, batch, since), limit)]


def _report(as_json: bool, counts: dict[str, int], line: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(counts) + "\n")
    else:
        console.print(line)


def _tsv(letter: DeadLetter) -> str:
    d = letter
    cells = (iso(d.failed_at), d.id, d.code, d.status, d.batch, d.row_id, d.attempts, d.calls,
             d.trace_id, d.message)  # fmt: skip
    return "\t".join("" if cell is None else printable(str(cell)) for cell in cells)


def _table(letters: list[DeadLetter], total: int) -> Table:
    """One block per job, whatever the terminal's width: the age, then the whole job id and its
    error, then batch, calls and trace_id, then the message (which wraps; nothing is cut)."""
    now = time.time()
    table = Table(
        Column("failed", no_wrap=True),
        Column("job · error · batch / row · calls · trace_id · message", overflow="fold"),
        box=box.SIMPLE_HEAD,
        show_lines=True,
        title=f"{len(letters)} of {total} failed job(s), newest first",
    )
    for d in letters:
        error = " ".join(str(p) for p in (d.code, d.status) if p is not None) or "-"
        where = " / ".join(p for p in (d.batch, d.row_id) if p) or "no batch"
        calls = "-" if d.calls is None else str(d.calls)
        detail = Text.assemble(
            (printable(d.id), "bold"), "  ", (printable(error), "red"), "\n",
            shown(where), f" · {calls} call(s) · trace ", shown(d.trace_id or "-"), "\n",
            shown(d.message or d.failure_reason or "(record expired)"),
        )  # fmt: skip
        table.add_row(age(d.failed_at, now), detail)
    return table


def _print_failure(record: JobRecord, failed_at: float | None) -> None:
    now = time.time()
    summary = Table.grid(Column(), Column(overflow="fold"), padding=(0, 2))
    summary.add_row("job", shown(record.id))
    summary.add_row("state", f"[bold]{record.state}[/bold]")
    in_queue = f"since {iso(failed_at)} ({age(failed_at, now)})" if failed_at else "no"
    summary.add_row("dead-letter queue", in_queue)
    summary.add_row("queue", shown(record.queue))
    if record.batch:
        row = f"{record.batch} line {record.batch_line}"
        summary.add_row("batch", shown(row + (f" id {record.row_id}" if record.row_id else "")))
    summary.add_row("source", shown(record.request.source_image_url))
    summary.add_row("target", shown(record.request.target_image_url))
    if record.request.timeout is not None:
        summary.add_row("timeout", f"{record.request.timeout:g}s")
    if record.metadata:
        summary.add_row("metadata", shown(json.dumps(record.metadata, ensure_ascii=False)))
    summary.add_row("created", iso(record.created_at) or "-")
    summary.add_row("attempts", f"{record.attempts} counted, {record.calls} call(s) made")
    if record.failure_reason:
        summary.add_row("failed because", shown(record.failure_reason))
    if record.last_error:
        summary.add_row("last error", shown(_error_line(record.last_error)))
        summary.add_row("trace_id", shown(record.last_error.get("trace_id") or "-"))
    console.print(summary)
    if record.history:
        table = Table("#", _folding("started (UTC)"), "outcome", "counted", _folding("error"),
                      _folding("trace_id"), _folding("worker"), box=box.SIMPLE_HEAD)  # fmt: skip
        for attempt in record.history:
            table.add_row(
                str(attempt.number), _clock(attempt.started_at), shown(attempt.outcome),
                "yes" if attempt.counted else "no",
                shown(_error_line(attempt.error) if attempt.error else "-"),
                shown((attempt.error or {}).get("trace_id") or "-"), shown(attempt.worker or "-"),
            )  # fmt: skip
        console.print(table)


def _error_line(error: dict[str, object]) -> str:
    head = " ".join(str(error[k]) for k in ("status", "code") if error.get(k) is not None)
    return f"{head or '-'}: {error.get('message') or ''}"


def _clock(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _folding(header: str) -> Column:
    """A column whose long values wrap onto the next lines instead of being cut."""
    return Column(header, overflow="fold")
