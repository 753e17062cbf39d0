"""The argv `faceswap-jobs worker` and `faceswap-jobs flower` hand to Celery: our defaults, then any
further option of Celery's worker or of Flower, so the wrappers take every flag the tools take.

Pure functions of settings and the command line, so what reaches Celery is tested without a process.
"""

from __future__ import annotations

from collections.abc import Sequence

from faceswap_jobs.config import Settings

WORKER_DEFAULTS = ("--task-events", "--without-mingle", "--without-gossip")
"""Events for Flower; no start-up sync or gossip: our workers share nothing through them."""

POOLS = ("threads", "prefork", "solo")

FLOWER_MAX_TASKS = 10_000
"""Tasks Flower keeps in memory unless `--max_tasks` says otherwise (its own default, 100,000
tasks with their arguments and results, is hundreds of MB on a busy cluster)."""

FLOWER_OWN = ("basic_auth", "port", "address")
"""Flower options the wrapper sets itself: the login comes from FACESWAP_FLOWER_USER and
FACESWAP_FLOWER_PASSWORD only (a password on a command line is readable by every local user)."""


class UsageError(ValueError):
    """A command line we refuse; the message says what to do instead."""


def autoscale_max(extra: Sequence[str]) -> int | None:
    """The largest pool size of a `--autoscale=MAX,MIN` (or `--autoscale MAX,MIN`) among `extra`,
    or None when there is none or Celery would refuse it anyway."""
    for i, arg in enumerate(extra):
        if arg.startswith("--autoscale="):
            value = arg.partition("=")[2]
        elif arg == "--autoscale" and i + 1 < len(extra):
            value = extra[i + 1]
        else:
            continue
        try:
            return max(int(part) for part in value.split(","))
        except ValueError:
            return None
    return None


def worker_settings(
    settings: Settings, *, pool: str | None, concurrency: int | None, extra: Sequence[str]
) -> Settings:
    """`settings` for the pool the command line asks for: its kind (`worker_pool`) and its size,
    `-c N` or `--autoscale`'s maximum (HTTP connections, Redis connections and the rate wait all
    follow `worker_concurrency`)."""
    update: dict[str, object] = {"worker_pool": worker_pool(settings, pool, extra)}
    size = concurrency if concurrency is not None else autoscale_max(extra)
    if size is not None:
        update["worker_concurrency"] = size
    return settings.model_copy(update=update)


def worker_pool(settings: Settings, pool: str | None, extra: Sequence[str]) -> str:
    """The pool to run: `--pool`, else FACESWAP_WORKER_POOL; with `--autoscale` and neither given,
    prefork, the one pool of ours Celery can grow and shrink. Raises `UsageError` for
    `--autoscale` on another pool (Celery would fail on its first scaling)."""
    autoscale = autoscale_max(extra) is not None
    chosen = pool or settings.worker_pool
    if autoscale and pool is None and "worker_pool" not in settings.model_fields_set:
        chosen = "prefork"
    if chosen not in POOLS:
        raise UsageError(f"--pool must be one of {', '.join(POOLS)}")
    if autoscale and chosen != "prefork":
        raise UsageError(
            f"--autoscale needs --pool=prefork: Celery cannot grow or shrink a {chosen} pool"
        )
    return chosen


def worker_argv(
    settings: Settings,
    *,
    queues: str | None,
    loglevel: str,
    hostname: str | None,
    extra: Sequence[str],
) -> list[str]:
    """`celery worker` with our pool, size, queues (interactive first) and defaults, then `extra`.

    `settings` come from `worker_settings`; under `--autoscale` Celery ignores the size.
    """
    argv = [
        "worker",
        f"--pool={settings.worker_pool}",
        f"--concurrency={settings.concurrency}",
        f"--queues={queues or f'{settings.interactive_queue},{settings.bulk_queue}'}",
        f"--loglevel={loglevel}",
        *WORKER_DEFAULTS,
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    return [*argv, *extra]


def flower_option(arg: str) -> str | None:
    """The name of a Flower option (`--url-prefix=x` -> `url_prefix`); None for a value."""
    if not arg.startswith("--"):
        return None
    return arg[2:].partition("=")[0].replace("-", "_")


def flower_argv(
    settings: Settings, *, port: int | None, address: str | None, extra: Sequence[str]
) -> list[str]:
    """`celery flower` with basic auth always on, `--max_tasks` bounded unless given, and any
    other Flower option from `extra` (`--url_prefix=flower`, `--persistent=True`; a value after a
    space is joined to its option, as Flower only reads `--name=value`).

    Raises `UsageError` when the password is unset, an option is unknown to Flower (Flower would
    silently drop it), or `extra` sets the login or the listening address itself.
    """
    from flower.options import default_options

    if settings.flower_password is None:
        raise UsageError("set FACESWAP_FLOWER_PASSWORD: Flower never runs without auth")
    passed: list[str] = []
    for arg in extra:
        name = flower_option(arg)
        if name is None:
            if not passed or "=" in passed[-1]:
                raise UsageError(f"not a Flower option: {arg!r} (Flower takes --name=value)")
            passed[-1] = f"{passed[-1]}={arg}"
            continue
        if name not in default_options:
            raise UsageError(f"unknown Flower option: --{name}")
        if name in FLOWER_OWN:
            raise UsageError(f"--{name} is set by faceswap-jobs flower (see its --help)")
        passed.append(arg)
    names = {flower_option(arg) for arg in passed}
    credentials = f"{settings.flower_user}:{settings.flower_password.get_secret_value()}"
    argv = [
        "flower",
        f"--port={port or settings.flower_port}",
        f"--address={address or settings.flower_host}",
        *passed,
    ]
    if "max_tasks" not in names:
        argv.append(f"--max_tasks={FLOWER_MAX_TASKS}")
    # Last, so no configuration file or FLOWER_BASIC_AUTH in the environment replaces it.
    return [*argv, f"--basic_auth={credentials}"]
