"""`faceswap-jobs`: one short function per command; settings come from `FACESWAP_*` once."""

from __future__ import annotations

import json
import sys
from typing import Annotated, NoReturn

import redis
import typer
from kombu.exceptions import OperationalError
from rich.table import Table
from rich.text import Text

from faceswap_jobs import __version__
from faceswap_jobs.config import Settings
from faceswap_jobs.connections import OUTAGE_ERRORS, redis_client, unavailable
from faceswap_jobs.errors import FaceSwapError, InvalidSwapRequest, ServiceUnavailableError
from faceswap_jobs.jobs.parking import ParkingLot
from faceswap_jobs.keys import Keys
from faceswap_jobs.limits import LimitsSnapshot
from faceswap_jobs.limits.roster import Roster
from faceswap_jobs.models import JobRecord, JobState
from faceswap_jobs.ops.batch_cli import backfill_command, batch_app
from faceswap_jobs.ops.budget_cli import budget_app
from faceswap_jobs.ops.check_cli import check_app
from faceswap_jobs.ops.console import (
    EXIT_UNAVAILABLE,
    console,
    err_console,
    load_settings,
    printable,
    run_celery,
    shown,
)
from faceswap_jobs.ops.dlq_cli import dlq_app
from faceswap_jobs.ops.spend_cli import spend_command
from faceswap_jobs.ops.tokens_cli import TOKEN_ID, tokens_app

SCRAPE_REDIS_RETRY_S = 2.0
"""A scrape waits this long for Redis, well inside Prometheus's usual 10-s scrape timeout."""

app = typer.Typer(
    help="Face Swap API jobs on Redis + Celery.", no_args_is_help=True, add_completion=False
)
app.command("backfill")(backfill_command)
app.add_typer(batch_app, name="batch")
app.add_typer(budget_app, name="budget")
app.add_typer(check_app, name="check")
app.add_typer(dlq_app, name="dlq")
app.add_typer(tokens_app, name="tokens")
app.command("spend")(spend_command)


def _print_version(requested: bool) -> None:
    if requested:
        console.print(f"faceswap-jobs {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Face Swap API jobs on Redis + Celery."""


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    pool: Annotated[
        str | None, typer.Option("--pool", "-P", help="threads, prefork or solo")
    ] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", min=1)] = None,
    queues: Annotated[
        str | None, typer.Option("--queues", "-Q", help="comma-separated queue names")
    ] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO",
    hostname: Annotated[
        str | None, typer.Option("--hostname", "-n", help="Celery node name")
    ] = None,
) -> None:
    """Run a Celery worker for swap jobs (threads by default: the work is waiting on HTTP).

    Any other `celery worker` option passes through: `--autoscale=8,2` (prefork),
    `--max-tasks-per-child=100`, `-X QUEUE`, `-O fair`.
    """
    from faceswap_jobs.ops.celery_argv import UsageError, worker_argv, worker_settings
    from faceswap_jobs.worker.app import worker_app

    try:
        settings = worker_settings(load_settings(service=True), pool=pool,
                                   concurrency=concurrency, extra=ctx.args)  # fmt: skip
    except UsageError as exc:
        err_console.print(shown(exc), style="red")
        raise typer.Exit(2) from None
    try:
        settings.token_pool()
    except ValueError as exc:
        err_console.print(Text.assemble(("invalid configuration: ", "red"), shown(exc)))
        raise typer.Exit(2) from None
    argv = worker_argv(settings, queues=queues, loglevel=loglevel, hostname=hostname,
                       extra=ctx.args)  # fmt: skip
    raise typer.Exit(run_celery(worker_app(settings), argv))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def emulator(ctx: typer.Context) -> None:
    """Run the local emulator of the Face Swap API (`faceswap-jobs emulator --help`)."""
    try:
        from faceswap_jobs.emulator import main as emulator_main
    except ModuleNotFoundError as missing:
        err_console.print(str(missing), markup=False, highlight=False)
        raise typer.Exit(1) from None
    emulator_main(list(ctx.args))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def flower(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option()] = None,
    address: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Run Flower with basic auth (FACESWAP_FLOWER_USER / FACESWAP_FLOWER_PASSWORD).

    Any other Flower option passes through (`--url_prefix=flower`, `--persistent=True`,
    `--db=flower.db`); `--max_tasks` is 10000 unless given.
    """
    from faceswap_jobs.celery_app import create_app
    from faceswap_jobs.ops.celery_argv import UsageError, flower_argv

    settings = load_settings(service=True)
    try:
        argv = flower_argv(settings, port=port, address=address, extra=ctx.args)
    except UsageError as exc:
        err_console.print(shown(exc), style="red")
        raise typer.Exit(2) from None
    raise typer.Exit(run_celery(create_app(settings), argv))


@app.command()
def submit(
    source_image_url: str,
    target_image_url: str,
    timeout: Annotated[float | None, typer.Option(help="vendor processing timeout, s")] = None,
    key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    queue: Annotated[str, typer.Option(help="interactive or bulk")] = "interactive",
    wait: Annotated[float | None, typer.Option(help="wait up to this many seconds")] = None,
) -> None:
    """Validate and enqueue one swap; prints the job id (and the result with --wait)."""
    from faceswap_jobs.producer.submit import Producer

    producer = Producer(load_settings())
    try:
        job = producer.submit_swap(
            source_image_url, target_image_url, timeout=timeout, idempotency_key=key, queue=queue
        )
    except InvalidSwapRequest as exc:
        err_console.print(Text.assemble(("refused: ", "red"), shown(exc)))
        raise typer.Exit(2) from None
    console.print(job.id)
    if wait is not None:
        try:
            result = job.result(timeout=wait)
        except (FaceSwapError, TimeoutError) as exc:
            err_console.print(Text.assemble((f"{type(exc).__name__}: ", "red"), shown(exc)))
            raise typer.Exit(1) from None
        console.print_json(result.model_dump_json())


@app.command()
def status(
    job_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="print the record as JSON")] = False,
) -> None:
    """Show a job: state, attempts, result or last error, and the history of every call."""
    from faceswap_jobs.producer.submit import Producer

    settings = load_settings()
    record = Producer(settings).get_job(job_id)
    if record is None:
        _print_unrecorded(settings, job_id, as_json)
        return
    if as_json:
        sys.stdout.write(record.model_dump_json(indent=2) + "\n")
        return
    _print_record(record)


def _print_unrecorded(settings: Settings, job_id: str, as_json: bool) -> None:
    """A bulk row no worker has taken yet has no record, only its place in its batch: queued
    (or about to be dropped, its batch cancelled). Anything else is unknown: exit 1."""
    from faceswap_jobs.batches.store import BatchStore

    store = BatchStore(redis_client(settings), Keys(settings.key_prefix), settings.job_ttl_s)
    found = store.find(job_id)
    if found is None:
        err_console.print(shown(f"job {job_id} is unknown or has expired"), style="red")
        raise typer.Exit(1)
    batch, position, line = found
    cancelled = store.is_cancelled(batch)
    if as_json:
        state = {"id": job_id, "state": "queued", "batch": batch, "batch_position": position,
                 "batch_line": line, "batch_cancelled": cancelled}  # fmt: skip
        sys.stdout.write(json.dumps(state, indent=2) + "\n")
        return
    summary = Table.grid(padding=(0, 2))
    summary.add_row("job", shown(job_id))
    summary.add_row("state", "[bold]queued[/bold] (no worker has taken it yet)")
    summary.add_row("batch", shown(f"{batch}, line {line}"))
    if cancelled:
        summary.add_row("note", "its batch was cancelled: a worker will drop it, uncalled")
    console.print(summary)


def _print_record(record: JobRecord) -> None:
    summary = Table.grid(padding=(0, 2))
    summary.add_row("job", shown(record.id))
    summary.add_row("state", f"[bold]{record.state}[/bold]")
    summary.add_row("queue", shown(record.queue))
    summary.add_row("attempts", f"{record.attempts} counted, {record.calls} call(s) made")
    if record.result is not None:
        summary.add_row("image_url", shown(record.result.image_url))
        summary.add_row(
            "image",
            f"{record.result.image_width}x{record.result.image_height}, "
            f"{record.result.image_size} bytes",
        )
    if record.last_error is not None and record.state is not JobState.SUCCEEDED:
        err = record.last_error
        summary.add_row(
            "last error",
            shown(f"{err.get('status') or '-'} {err.get('code') or '-'}: {err.get('message')}"),
        )
        summary.add_row("trace_id", shown(err.get("trace_id") or "-"))
    if record.failure_reason:
        summary.add_row("failed because", shown(record.failure_reason))
    if record.wait_reason and not record.state.finished:
        summary.add_row("waiting for", shown(record.wait_reason))
    console.print(summary)
    if record.history:
        table = Table(
            "#", "token", "outcome", "counted", "error", "trace_id", "waited before the next"
        )
        for attempt in record.history:
            err = attempt.error or {}
            table.add_row(
                str(attempt.number),
                shown(attempt.token_id or "-"),
                shown(attempt.outcome),
                "yes" if attempt.counted else "no",
                shown(f"{err.get('status') or ''} {err.get('code') or ''}".strip() or "-"),
                shown(err.get("trace_id") or "-"),
                f"{attempt.delay_s:.1f}s" if attempt.delay_s is not None else "-",
            )
        console.print(table)


def _roster(settings: Settings) -> tuple[Roster, ParkingLot, redis.Redis]:
    client = redis_client(settings)
    return Roster(settings, client), ParkingLot(client, Keys(settings.key_prefix)), client


TokenOption = Annotated[
    list[str] | None,
    typer.Option("--token", help="a token's id (as `limits` shows it); repeatable; default: all"),
]


def _chosen(roster: Roster, tokens: list[str] | None) -> list[str]:
    """The ids named, each checked; none named: every token of the pool."""
    if not tokens:
        return roster.token_ids()
    for tid in tokens:
        if not TOKEN_ID.fullmatch(tid):
            err_console.print(Text.assemble(("not a token id (16 hex digits): ", "red"),
                                            shown(tid)))  # fmt: skip
            raise typer.Exit(2)
    return tokens


@app.command("limits")
def show_limits() -> None:
    """Show each token's effective rate, pause, in-flight calls and breaker, and waiting jobs."""
    settings = load_settings()
    roster, lot, client = _roster(settings)
    for snap in roster.snapshots():
        console.print(_token_grid(snap))
    parked, paused = lot.counts()
    table = Table.grid(padding=(0, 2))
    table.add_row("waiting jobs", f"{parked} parked, {paused} paused by the breaker")
    for name in (settings.interactive_queue, settings.bulk_queue):
        table.add_row(f"queue {name}", str(client.llen(name)))
    console.print(table)


def _token_grid(snap: LimitsSnapshot) -> Table:
    table = Table.grid(padding=(0, 2))
    service = "retired (`faceswap-jobs tokens restore` brings it back)" if snap.retired else (
        "in service")  # fmt: skip
    table.add_row("token", f"{snap.token_id}  (sha256 prefix), weight {snap.weight:g}, {service}")
    table.add_row(
        "rate",
        f"{snap.pacing_per_s:.2f}/s effective ({snap.rate_per_s:.2f}/s over a "
        f"{1 + snap.window_margin_s:.3f}-s window), {snap.ceiling_per_s:g}/s ceiling, "
        f"burst {snap.burst}",
    )
    table.add_row(
        "limits from",
        "the workers (as they enforce them)" if snap.published
        else "this shell's settings: no worker published its limits in the last minute",
    )  # fmt: skip
    breaker = snap.breaker
    if breaker.manual:
        pause = "yes: operator pause (`faceswap-jobs resume` ends it)"
    elif not breaker.closed:
        pause = f"yes: breaker {breaker.state}"
    else:
        pause = f"yes: after a 429, {snap.paused_for_s:.1f}s left" if snap.paused_for_s else "no"
    table.add_row("paused", pause)
    table.add_row("in flight", f"{snap.in_flight} / {snap.max_in_flight}")
    if breaker.closed:
        table.add_row("breaker", "closed")
    else:
        detail = "operator pause" if breaker.manual else f"probe in {breaker.probe_in_s:.0f}s"
        table.add_row(
            "breaker",
            Text.assemble((breaker.state, "red"), shown(f": {breaker.code} {breaker.reason}"),
                          f" ({detail})"),
        )  # fmt: skip
    return table


@app.command()
def pause(
    reason: Annotated[str, typer.Option(help="shown to everyone")] = "operator",
    token: TokenOption = None,
) -> None:
    """Stop all calls with the pool's tokens (or the --token ones); jobs wait, nothing fails,
    until `resume`."""
    roster, _, _ = _roster(load_settings())
    for tid in _chosen(roster, token):
        roster.limits(tid).pause(reason)
        console.print(Text.assemble(f"token {tid} paused: ", shown(reason)))


@app.command()
def resume(token: TokenOption = None) -> None:
    """Close the tokens' breakers (operator pause or auth trip; default: every token's) and
    release the waiting jobs."""
    roster, lot, _ = _roster(load_settings())
    chosen = _chosen(roster, token)
    for tid in chosen:
        roster.limits(tid).resume()
    released = 0
    while moved := lot.release_paused(1000):
        released += moved
    console.print(f"token {', '.join(chosen)} resumed; {released} paused job(s) released")


@app.command()
def webhook(
    port: Annotated[int | None, typer.Option(min=1, max=65535)] = None,
    host: Annotated[str | None, typer.Option()] = None,
    workers: Annotated[int, typer.Option(min=1, help="receiver processes")] = 1,
) -> None:
    """Run the callback receiver (needs FACESWAP_WEBHOOK_SECRET); stateless, so it scales out."""
    from faceswap_jobs.callbacks.serving import serve

    settings = load_settings(service=True)
    if settings.webhook_secret is None:
        err_console.print("[red]the webhook receiver needs FACESWAP_WEBHOOK_SECRET[/red]")
        raise typer.Exit(2)
    serve(settings, host or settings.webhook_host, port or settings.webhook_port, workers)


@app.command()
def metrics(
    port: Annotated[int, typer.Option(min=1, max=65535)] = 9808,
    address: Annotated[str, typer.Option()] = "127.0.0.1",
) -> None:
    """Serve Prometheus metrics (calls, jobs, rate, in-flight, breaker, queues) read from Redis."""
    from prometheus_client import CollectorRegistry

    from faceswap_jobs.logformat import use_log_format
    from faceswap_jobs.ops.metrics import RedisStatsCollector, redis_answers, serve_metrics

    settings = load_settings(service=True).model_copy(
        update={"redis_retry_s": SCRAPE_REDIS_RETRY_S}
    )
    roster, lot, client = _roster(settings)
    registry = CollectorRegistry()
    registry.register(RedisStatsCollector(settings, client, roster, lot))
    use_log_format(settings)
    server = serve_metrics(registry, redis_answers(client), address, port)
    console.print(f"metrics on http://{address}:{port}/metrics (and /healthz, /readyz)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.server_close()


@app.command()
def demo(
    count: Annotated[int, typer.Option(min=1, max=200, help="how many sample swaps")] = 12,
    output: Annotated[str, typer.Option(help="folder for the swapped PNGs")] = "demo-output",
    time_scale: Annotated[float, typer.Option(help="emulator time scale (1.0 = 60-120 s)")] = 0.04,
    hold: Annotated[bool, typer.Option(help="keep Flower up until Ctrl-C")] = False,
) -> None:
    """Run the whole system on private local services and a set of sample swaps."""
    from faceswap_jobs.ops.demo import run_demo

    settings = load_settings(service=True)
    code = run_demo(settings, count=count, output=output, time_scale=time_scale, hold=hold)
    raise typer.Exit(code)


def main() -> None:
    """The command line; Redis out of reach is one line and exit code 3, never a traceback."""
    try:
        app()
    except ServiceUnavailableError as exc:
        _unreachable(exc)
    except (*OUTAGE_ERRORS, OperationalError) as exc:
        _unreachable(unavailable(load_settings().redis_url, exc))


def _unreachable(exc: ServiceUnavailableError) -> NoReturn:
    """One unwrapped line, whatever the terminal's width: scripts and supervisors grep it."""
    sys.stderr.write(printable(exc.message) + "\n")
    sys.exit(EXIT_UNAVAILABLE)


if __name__ == "__main__":
    main()
