"""`faceswap-jobs backfill` and `faceswap-jobs batch ...`: bulk work from the command line."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from faceswap_jobs.batches.backfill import BatchSourceMismatch, backfill, dry_run
from faceswap_jobs.batches.enqueue import BatchCancelled, BatchLocked, Chunked
from faceswap_jobs.batches.estimate import Estimate
from faceswap_jobs.batches.export import export_rows, write_export
from faceswap_jobs.batches.rows import InputFileError
from faceswap_jobs.batches.store import BatchProgress, BatchStore
from faceswap_jobs.config import Settings
from faceswap_jobs.connections import OUTAGE_ERRORS, redis_client
from faceswap_jobs.errors import InvalidSwapRequest, ServiceUnavailableError
from faceswap_jobs.jobs.spend import day_of, recent_calls_per_success
from faceswap_jobs.jobs.store import job_store
from faceswap_jobs.keys import Keys
from faceswap_jobs.limits.roster import Roster
from faceswap_jobs.ops.console import console, err_console, load_settings, shown
from faceswap_jobs.producer.batch import Batch

if TYPE_CHECKING:
    from faceswap_jobs.batches.report import SheetRow

batch_app = typer.Typer(help="Follow, export, cancel and retry batches.", no_args_is_help=True)


def _progress_columns() -> tuple:
    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def backfill_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    batch: Annotated[str, typer.Option(help="batch name; the same name resumes")],
    rejects: Annotated[Path | None, typer.Option(help="default: FILE.rejects.csv")] = None,
    dry_run_only: Annotated[
        bool, typer.Option("--dry-run", help="validate and estimate calls, time and cost only")
    ] = False,
    price_per_call: Annotated[
        float | None,
        typer.Option(help="--dry-run: what one call costs (default: FACESWAP_PRICE_PER_CALL)"),
    ] = None,
) -> None:
    """Enqueue a CSV (with header) or JSONL file of swaps as a batch on the bulk queue.

    Rows stream in constant memory; invalid rows go to the rejects file with line and reason.
    Run it again after a crash or Ctrl-C: it continues where the batch stopped."""
    settings = load_settings(service=True)
    rejects_path = rejects or file.with_name(file.name + ".rejects.csv")
    try:
        if dry_run_only:
            price = Decimal(str(price_per_call)) if price_per_call else settings.price_per_call
            _dry_run(settings, file, rejects_path, price)
            return
        _backfill(settings, file, batch, rejects_path)
    except (InputFileError, BatchSourceMismatch, BatchLocked, InvalidSwapRequest) as exc:
        err_console.print(shown(exc), style="red")
        raise typer.Exit(2) from None
    except BatchCancelled as exc:
        err_console.print(shown(exc), style="yellow")
        raise typer.Exit(1) from None


def _dry_run(settings: Settings, file: Path, rejects_path: Path, price: Decimal | None) -> None:
    with Progress(*_progress_columns(), console=err_console, transient=True) as bar:
        task = bar.add_task("validating", total=None, info="")
        rows, rejected = dry_run(settings, file, rejects_path,
                                 lambda n: bar.update(task, completed=n))  # fmt: skip
    console.print(f"{rows} rows: {rows - rejected} valid, {rejected} rejected "
                  f"(see {rejects_path}); nothing enqueued")  # fmt: skip
    ratio, ratio_from, rate, rate_from = _history(settings)
    estimate = Estimate(rows, rows - rejected, ratio, ratio_from, rate, rate_from, price)
    for line in estimate.lines():
        console.print(shown(line))


DRY_RUN_REDIS_RETRY_S = 2.0
"""A dry run waits this long for Redis, then estimates from the settings alone."""


def _history(settings: Settings) -> tuple[float, str, float, str]:
    """Calls per success of the last days and the rate bulk work may use, with where each came
    from: the counters and the limits the workers publish, or (Redis out of reach, or no
    history) 1.0 and this shell's FACESWAP_RATE_PER_S."""
    bulk_share = 1.0 - settings.interactive_share
    share = f"{bulk_share:.0%} bulk share of"
    try:
        client = redis_client(settings, retry_s=DRY_RUN_REDIS_RETRY_S)
        keys = Keys(settings.key_prefix)
        ratio = recent_calls_per_success(client, keys, day_of(time.time()))
        ceiling, tokens, published = Roster(settings, client).combined_ceiling()
    except (*OUTAGE_ERRORS, ServiceUnavailableError):
        return _offline_history(settings, share, bulk_share)
    ratio_from = "the last 7 days' calls" if ratio is not None else "no calls in the last 7 days"
    pool = f"{tokens} token(s) in service" if tokens != 1 else "the token"
    if published:
        rate_from = f"{share} the {ceiling:g}/s ceiling the workers publish for {pool}"
    else:
        rate_from = (f"{share} {ceiling:g}/s from this shell's settings for {pool}: no worker "
                     "published its limits in the last minute")  # fmt: skip
    return ratio or 1.0, ratio_from, ceiling * bulk_share, rate_from


def _offline_history(
    settings: Settings, share: str, bulk_share: float
) -> tuple[float, str, float, str]:
    """Redis out of reach: no history, and the rate this shell's own settings give."""
    try:
        own_pool = settings.token_pool()
    except ValueError:
        own_pool = ()
    if len(own_pool) > 1:
        rate = settings.pool_rate_per_s(own_pool)
        own = f"{share} {rate:g}/s for the {len(own_pool)} tokens of this shell's pool"
    else:
        rate = settings.rate_per_s
        own = f"{share} FACESWAP_RATE_PER_S {rate:g}/s"
    own += "; Redis out of reach"
    return 1.0, "Redis out of reach: no history", rate * bulk_share, own


def _backfill(settings: Settings, file: Path, batch: str, rejects_path: Path) -> None:
    size = file.stat().st_size
    with Progress(*_progress_columns(), console=err_console) as bar:
        task = bar.add_task(f"batch {batch}", total=size, info="")

        def on_chunk(done: Chunked) -> None:
            bar.update(task, completed=done.last_offset, info=f"{done.enqueued:,} enqueued")

        def on_wait(depth: int) -> None:
            bar.update(task, info=f"queue at high-water ({depth:,}): waiting for workers")

        result = backfill(settings, redis_client(settings), file, batch, rejects_path,
                          on_chunk=on_chunk, on_wait=on_wait)  # fmt: skip
        bar.update(task, completed=size)
    if result.already_complete:
        console.print(f"batch {batch} was already fully enqueued; nothing to do")
        return
    done = result.chunked
    start = f"resumed at line {result.resumed_at_line}" if result.resumed_at_line else "new batch"
    console.print(f"batch {batch} ({start}): {done.rows} rows read, {done.enqueued} enqueued, "
                  f"{done.rejected} rejected (see {rejects_path})")  # fmt: skip


@batch_app.command("list")
def list_batches() -> None:
    """Batches, newest first, with their progress."""
    settings = load_settings()
    store = BatchStore(redis_client(settings), Keys(settings.key_prefix), settings.job_ttl_s)
    table = Table("batch", "rows", "queued", "running", "succeeded", "failed", "cancelled",
                  "rejected", "rows/s", "ETA")  # fmt: skip
    for name in store.names():
        p = store.progress(name)
        if p is not None:
            c = p.counts
            counts = (p.rows, p.queued, p.running, c["succeeded"], c["failed"], p.cancelled,
                      c["rejected"])  # fmt: skip
            name_cell = shown(name + (" (cancelled)" if p.cancelled_flag else ""))
            table.add_row(name_cell, *(f"{v:,}" for v in counts), _rate(p), _eta(p))
    console.print(table)


@batch_app.command()
def show(
    name: str, as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False
) -> None:
    """A batch's counters (O(1): one Redis read, whatever its size)."""
    progress = _progress(name)
    if as_json:
        console.print_json(json.dumps(progress.as_dict()))
        return
    table = Table("", "", show_header=False)
    for key, value in progress.as_dict().items():
        if key.endswith("_at") and isinstance(value, float):
            table.add_row(key, datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds"))
        elif key not in ("rate_per_s", "eta_s"):
            table.add_row(key, shown(value))
    table.add_row("rows/s (since the first start)", _rate(progress))
    table.add_row("ETA", _eta(progress))
    console.print(table)


def _rate(progress: BatchProgress) -> str:
    rate = progress.rate_per_s
    return "-" if rate is None else f"{rate:,.2f}"


def _eta(progress: BatchProgress) -> str:
    """h:mm:ss, with "≥" while the enqueue goes on (rows still to come are not counted)."""
    eta = progress.eta_s
    if eta is None:
        return "-"
    minutes, seconds = divmod(round(eta), 60)
    hours, minutes = divmod(minutes, 60)
    bound = "" if progress.enqueue_done else "≥ "
    return f"{bound}{hours}:{minutes:02d}:{seconds:02d}"


@batch_app.command()
def watch(
    name: str,
    every_s: Annotated[float, typer.Option(min=0.2)] = 1.0,
    appear_s: Annotated[
        float, typer.Option(min=0, help="how long to wait for a batch that does not exist yet")
    ] = 60.0,
) -> None:
    """A live progress bar with rate and ETA, until the batch is done (Ctrl-C to stop watching;
    the batch goes on). Started next to its `backfill`, it waits for the batch to appear."""
    _await_batch(name, appear_s)
    with Progress(*_progress_columns(), console=console) as bar:
        task = bar.add_task(f"batch {name}", total=None, info="")
        while True:
            p = _progress(name)
            c = p.counts
            info = (f"queued {p.queued:,} · running {p.running:,} · ok {c['succeeded']:,} · "
                    f"failed {c['failed']:,} · cancelled {p.cancelled:,} · "
                    f"rejected {c['rejected']:,}")  # fmt: skip
            if not (p.enqueue_done or p.cancelled_flag):
                info += " · reading the file" + (
                    f" ({p.cursor_offset / p.source_bytes:.0%})" if p.source_bytes else ""
                )
            bar.update(task, total=max(1, p.expected_rows), completed=p.finished, info=info)
            if p.done:
                break
            time.sleep(every_s)


def _await_batch(name: str, appear_s: float) -> None:
    """`backfill` and `watch` started together: the batch appears within a moment."""
    settings = load_settings()
    store = BatchStore(redis_client(settings), Keys(settings.key_prefix), settings.job_ttl_s)
    deadline = time.monotonic() + appear_s
    with err_console.status(shown(f"waiting for batch {name} to appear")):
        while store.progress(name) is None and time.monotonic() < deadline:
            time.sleep(0.5)


@batch_app.command()
def export(name: str, out: Path) -> None:
    """Results and failures, one row per input row, as CSV or JSON Lines (by OUT's suffix)."""
    settings = load_settings()
    _progress(name)
    count = write_export(job_store(settings, redis_client(settings)), name, out)
    console.print(f"wrote {count} rows to {out}")


@batch_app.command()
def cancel(name: str) -> None:
    """Stop a batch: queued rows are dropped, calls already running finish."""
    settings = load_settings()
    _progress(name)
    Batch(name, settings, redis_client(settings)).cancel()
    console.print(f"batch {name} cancelled: workers drop its queued rows as they reach them")


@batch_app.command("retry-failed")
def retry_failed(name: str) -> None:
    """Send the batch's failed jobs again, each with a fresh retry budget."""
    settings = load_settings()
    _progress(name)
    sent = Batch(name, settings, redis_client(settings)).retry_failed()
    console.print(f"{sent} failed job(s) of batch {name} sent again")


@batch_app.command()
def report(
    name: str,
    out: Path,
    sample: Annotated[int, typer.Option(min=1, help="rows in the sheet")] = 48,
    seed: Annotated[int, typer.Option(help="which rows are sampled")] = 0,
) -> None:
    """An HTML contact sheet (source / target / result thumbnails) of a sample of the batch."""
    from faceswap_jobs.batches.addresses import HostPolicy
    from faceswap_jobs.batches.report import write_contact_sheet

    settings = load_settings()
    _progress(name)
    rows = export_rows(job_store(settings, redis_client(settings)), name)
    picked, seen = _reservoir(rows, sample, random.Random(seed))
    sheet = [_sheet_row(row) for row in picked]
    with Progress(*_progress_columns(), console=err_console, transient=True) as bar:
        task = bar.add_task("thumbnails", total=None, info="")
        write_contact_sheet(
            sheet, out, title=f"batch {name}",
            hosts=HostPolicy(allow_private_hosts=settings.report_allow_private_hosts),
            on_progress=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
    console.print(f"wrote {out} ({len(sheet)} of {seen} rows)")


def _reservoir(
    rows: Iterator[dict[str, object]], k: int, rng: random.Random
) -> tuple[list[dict[str, object]], int]:
    """A uniform sample of `k` rows in input order, holding only `k` rows in memory."""
    kept: list[tuple[int, dict[str, object]]] = []
    seen = 0
    for seen, row in enumerate(rows, start=1):
        if len(kept) < k:
            kept.append((seen, row))
        elif (slot := rng.randrange(seen)) < k:
            kept[slot] = (seen, row)
    return [row for _, row in sorted(kept, key=lambda pair: pair[0])], seen


def _sheet_row(row: dict[str, object]) -> SheetRow:
    from faceswap_jobs.batches.report import SheetRow

    def text(name: str) -> str | None:
        return str(row[name]) if row[name] not in (None, "") else None

    detail = " ".join(str(row[k]) for k in ("error_code", "error_message") if row[k])
    return SheetRow(
        label=f"line {row['line']}" + (f" · id {row['row_id']}" if row["row_id"] else ""),
        job_id=text("job_id"),
        status=str(row["status"]),
        source_url=text("source_image_url"),
        target_url=text("target_image_url"),
        result_url=text("image_url"),
        detail=detail,
    )


def _progress(name: str) -> BatchProgress:
    settings = load_settings()
    progress = BatchStore(
        redis_client(settings), Keys(settings.key_prefix), settings.job_ttl_s
    ).progress(name)
    if progress is None:
        err_console.print(shown(f"no batch named {name!r}"), style="red")
        raise typer.Exit(2)
    return progress
