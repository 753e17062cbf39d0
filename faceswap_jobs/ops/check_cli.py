"""`faceswap-jobs check redis|worker|webhook`: health checks for probes (Kubernetes exec probes,
compose health checks), one line of output and an exit code a supervisor can act on.

Exit codes: 0 healthy; 1 the worker or receiver did not answer; 3 Redis could not be reached
(the CLI's code for that, see `console`). A probe treats every non-zero code as a failure, so
`check worker --redis-outage-ok` exists for liveness: restarting a worker cannot bring Redis back,
and a restart during an outage would only end its calls in flight and add crash-loop back-off
to the recovery.

Each check waits a bounded time and imports only what it needs: probes run every few seconds in
the same container (and memory limit) as the process they watch.
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request
from typing import Annotated, Any, NoReturn

import redis
import typer
from redis.backoff import NoBackoff
from redis.retry import Retry

from faceswap_jobs.config import Settings
from faceswap_jobs.connections import unavailable
from faceswap_jobs.ops.console import EXIT_UNAVAILABLE, load_settings, printable

EXIT_UNHEALTHY = 1
DEFAULT_NODE = "celery@%h"
"""Celery's own default node name: `celery@` and this host's name (in Kubernetes, the pod's)."""

check_app = typer.Typer(
    help="Health checks for probes: exit 0 when healthy, 1 when not, 3 when Redis is away.",
    no_args_is_help=True,
)

Timeout = Annotated[float, typer.Option(min=0.1, max=60.0, help="seconds to wait for an answer")]


@check_app.command("redis")
def check_redis(timeout: Timeout = 2.0) -> None:
    """Redis answers PING (a loading or password-refusing Redis does not count)."""
    settings = load_settings()
    problem = redis_problem(settings.redis_url, timeout)
    if problem is not None:
        _fail(EXIT_UNAVAILABLE, problem)
    _say("redis: ok")


@check_app.command("worker")
def check_worker(
    node: Annotated[
        str, typer.Argument(help="Celery node name, with %h/%n/%d as in `worker --hostname`")
    ] = DEFAULT_NODE,
    timeout: Timeout = 5.0,
    redis_outage_ok: Annotated[
        bool, typer.Option(help="pass when Redis is away (for liveness probes)")
    ] = False,
) -> None:
    """This host's worker answers a Celery ping (the main thread answers while the pool works)."""
    from celery.utils.nodenames import default_nodename, host_format

    settings = load_settings()
    destination = host_format(default_nodename(node))
    problem = redis_problem(settings.redis_url, min(timeout, 2.0))
    if problem is not None:
        if redis_outage_ok:
            _say(f"worker {destination}: not checked, {problem}")
            return
        _fail(EXIT_UNAVAILABLE, problem)
    if not worker_answers(settings, destination, timeout):
        _fail(EXIT_UNHEALTHY, f"worker {destination}: no answer within {timeout:g} s")
    _say(f"worker {destination}: ok")


@check_app.command("webhook")
def check_webhook(
    url: Annotated[
        str | None,
        typer.Option(help="health URL [default: http://127.0.0.1:$FACESWAP_WEBHOOK_PORT/healthz]"),
    ] = None,
    timeout: Timeout = 3.0,
) -> None:
    """The local callback receiver answers /healthz with 200."""
    if url is None:
        url = f"http://127.0.0.1:{load_settings().webhook_port}/healthz"
    status, body = http_get(url, timeout)
    if status != 200:
        _fail(EXIT_UNHEALTHY, f"webhook {url}: {body}")
    redis_up = isinstance(body, dict) and body.get("redis") is True
    _say(f"webhook: ok (redis {'up' if redis_up else 'down'})")


def redis_problem(redis_url: str, timeout_s: float) -> str | None:
    """Why Redis did not answer PING within about `timeout_s` (connect, then reply), or None.

    One try, no retry: a probe is itself retried by its supervisor, and a retry budget would
    outlast the probe's own timeout. The reason names the address, never the password."""
    client = redis.Redis.from_url(
        redis_url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return unavailable(redis_url, exc).message
    finally:
        client.close()
    return None


def worker_answers(settings: Settings, destination: str, timeout_s: float) -> bool:
    """Whether Celery node `destination` answers a ping within `timeout_s`.

    Only that node is asked (the broadcast names it), so a probe costs the other workers
    nothing but a message they drop. The ping runs in a daemon thread bounded by the timeout:
    kombu's publish retries a lost connection with no time limit of its own."""
    from faceswap_jobs.celery_app import create_app

    app = create_app(settings)
    replies: list[dict[str, Any]] = []

    def ping() -> None:
        replies.extend(app.control.ping(destination=[destination], timeout=timeout_s))

    thread = threading.Thread(target=ping, name="check-worker", daemon=True)
    thread.start()
    thread.join(timeout_s + 2.0)
    return any(destination in reply for reply in replies)


def http_get(url: str, timeout_s: float) -> tuple[int | None, Any]:
    """(status, JSON body or a short reason) of a GET, never through a proxy from the
    environment: the receiver is on this host."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as response:
            return response.status, _json(response.read(4096))
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return None, f"no answer ({reason})"


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _say(line: str) -> None:
    """One line, unwrapped and without markup: probes' output lands in events and logs."""
    sys.stdout.write(printable(line) + "\n")


def _fail(code: int, line: str) -> NoReturn:
    sys.stderr.write(printable(line) + "\n")
    raise typer.Exit(code)
