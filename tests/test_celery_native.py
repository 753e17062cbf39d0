"""Celery's own tools work on our app, and our wrappers take every flag Celery's and Flower's take.

`celery -A faceswap_jobs inspect|control|events|purge|status` against a real worker started by
`faceswap-jobs worker` with Celery's short flags and a passed-through option; the argv the wrappers
hand to Celery, as pure functions; Flower started with a passed-through `--url_prefix`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests
import typer

from faceswap_jobs.config import Settings
from faceswap_jobs.models import JobState
from faceswap_jobs.ops import cli
from faceswap_jobs.ops.celery_argv import (
    FLOWER_MAX_TASKS,
    WORKER_DEFAULTS,
    UsageError,
    flower_argv,
    worker_argv,
    worker_settings,
)
from faceswap_jobs.ops.sandbox import ManagedProcess, free_port, http_ok, python_module, wait_until
from tests.support.emulator import Emulator
from tests.support.stack import Stack, own_queues

QUEUES = own_queues("native")
INTERACTIVE, BULK = QUEUES["FACESWAP_INTERACTIVE_QUEUE"], QUEUES["FACESWAP_BULK_QUEUE"]
NODE = f"native@{socket.gethostname()}"
FLOWER_PASSWORD = "flower-pw-5c1e9a7d20"


# --- pure: what the wrappers hand to Celery ---------------------------------------------------


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with no pool, size or password from this process's environment."""
    for name in ("FACESWAP_WORKER_POOL", "FACESWAP_WORKER_CONCURRENCY", "FACESWAP_FLOWER_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return Settings(_env_file=None)


def _parsed(command: str, args: list[str]) -> tuple[dict[str, Any], list[str]]:
    group = typer.main.get_command(cli.app)
    assert isinstance(group, typer.core.TyperGroup)
    ctx = group.commands[command].make_context(command, args)
    return ctx.params, ctx.args


def test_worker_takes_celery_short_flags_and_passes_the_rest_through() -> None:
    extra = ["--autoscale=8,2", "--max-tasks-per-child=100", "-E", "-O", "fair", "-X", "other"]
    params, args = _parsed("worker", ["-c", "3", "-Q", "a,b", "-l", "debug", "-n", "w@%h", *extra])

    assert (params["concurrency"], params["queues"]) == (3, "a,b")
    assert (params["loglevel"], params["hostname"]) == ("debug", "w@%h")
    assert args == extra


def test_worker_argv_is_our_defaults_then_the_passed_flags(plain: Settings) -> None:
    settings = worker_settings(plain, pool=None, concurrency=3, extra=["--max-tasks-per-child=50"])
    argv = worker_argv(settings, queues=None, loglevel="INFO", hostname="w@%h",
                       extra=["--max-tasks-per-child=50", "-O", "fair"])  # fmt: skip

    assert argv == [
        "worker",
        "--pool=threads",
        "--concurrency=3",
        f"--queues={plain.interactive_queue},{plain.bulk_queue}",
        "--loglevel=INFO",
        *WORKER_DEFAULTS,
        "--hostname=w@%h",
        "--max-tasks-per-child=50",
        "-O",
        "fair",
    ]
    assert settings.concurrency == 3


def test_autoscale_sizes_the_worker_and_runs_prefork(plain: Settings) -> None:
    for extra in (["--autoscale=8,2"], ["--autoscale", "2,8"]):
        settings = worker_settings(plain, pool=None, concurrency=None, extra=extra)
        assert (settings.worker_pool, settings.concurrency) == ("prefork", 8)
    with pytest.raises(UsageError, match="--autoscale needs --pool=prefork"):
        worker_settings(plain, pool="threads", concurrency=None, extra=["--autoscale=8"])
    configured = plain.model_copy(update={"worker_pool": "threads"})
    with pytest.raises(UsageError, match="cannot grow or shrink a threads pool"):
        worker_settings(configured, pool=None, concurrency=None, extra=["--autoscale=8"])
    with pytest.raises(UsageError, match="--pool must be one of"):
        worker_settings(plain, pool="gevent", concurrency=None, extra=[])


def test_flower_argv_bounds_tasks_and_ends_with_our_login(plain: Settings) -> None:
    settings = Settings(_env_file=None, flower_password=FLOWER_PASSWORD)
    argv = flower_argv(settings, port=5601, address="0.0.0.0",
                       extra=["--url_prefix", "flower", "--persistent=True"])  # fmt: skip

    assert argv == [
        "flower",
        "--port=5601",
        "--address=0.0.0.0",
        "--url_prefix=flower",
        "--persistent=True",
        f"--max_tasks={FLOWER_MAX_TASKS}",
        f"--basic_auth=admin:{FLOWER_PASSWORD}",
    ]
    given = flower_argv(settings, port=None, address=None, extra=["--max-tasks=500"])
    assert [a for a in given if "max" in a] == ["--max-tasks=500"]


@pytest.mark.parametrize(
    ("extra", "refusal"),
    [
        (["--basic_auth=root:pw"], "set by faceswap-jobs flower"),
        (["--basic-auth=root:pw"], "set by faceswap-jobs flower"),
        (["--url-prefx=flower"], "unknown Flower option: --url_prefx"),
        (["flower"], "not a Flower option"),
    ],
)
def test_flower_argv_refuses(plain: Settings, extra: list[str], refusal: str) -> None:
    settings = Settings(_env_file=None, flower_password=FLOWER_PASSWORD)
    with pytest.raises(UsageError, match=refusal):
        flower_argv(settings, port=None, address=None, extra=extra)


def test_flower_never_runs_without_a_password(plain: Settings) -> None:
    with pytest.raises(UsageError, match="FACESWAP_FLOWER_PASSWORD"):
        flower_argv(plain, port=None, address=None, extra=[])


def test_celery_finds_a_lazy_app_with_our_task_and_bootstep() -> None:
    """Importing the module reads no settings; `celery -A faceswap_jobs` builds the worker's app."""
    code = (
        "import json, sys, faceswap_jobs.celery\n"
        "before = sorted(m for m in sys.modules if m.startswith('faceswap_jobs'))\n"
        "from celery.app.utils import find_app\n"
        "app = find_app('faceswap_jobs')\n"
        "steps = sorted(s.__name__ for s in app.steps['worker'])\n"
        "print(json.dumps([before, steps, 'faceswap.swap' in app.tasks,\n"
        "                  app.conf.worker_pool, app.conf.worker_concurrency,\n"
        "                  find_app('faceswap_jobs.celery:app') is app]))\n"
    )
    env = {"FACESWAP_WORKER_POOL": "prefork", "FACESWAP_WORKER_CONCURRENCY": "7", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip

    assert json.loads(out) == [
        ["faceswap_jobs", "faceswap_jobs.celery"],
        ["SchedulerStep"],
        True,
        "prefork",
        7,
        True,
    ]


def test_refused_command_lines_exit_2_with_the_reason() -> None:
    for args, reason in [
        (["worker", "-P", "threads", "--autoscale=4,1"], "--autoscale needs --pool=prefork"),
        (["flower", "--basic_auth=root:pw"], "--basic_auth is set by faceswap-jobs flower"),
    ]:
        env = {"FACESWAP_FLOWER_PASSWORD": FLOWER_PASSWORD, "PATH": ""}
        done = subprocess.run(python_module("faceswap_jobs", *args), env=env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert (done.returncode, reason in done.stderr) == (2, True), done.stderr
        assert "root:pw" not in done.stderr + done.stdout


# --- integration: Celery's own tools against a worker our wrapper started ---------------------


@pytest.fixture(scope="module")
def nstack(stack: Stack) -> Iterator[Stack]:
    stack.use_queues(QUEUES)
    stack.start_worker("native", "-P", "prefork", "-c", "3", "-Q", f"{INTERACTIVE},{BULK}",
                       "--max-tasks-per-child=50", **QUEUES)  # fmt: skip
    yield stack


def celery(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`celery -A faceswap_jobs ARGS` as a Celery user runs it, with this module's settings."""
    return subprocess.run(
        python_module("celery", "-A", "faceswap_jobs", *args),
        env=stack.env(**{**QUEUES, **env}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _json_reply(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)[NODE]


@pytest.mark.integration
def test_inspect_ping_answers(nstack: Stack) -> None:
    assert _json_reply(celery(nstack, "inspect", "ping", "-d", NODE, "--json")) == {"ok": "pong"}


@pytest.mark.integration
def test_the_worker_runs_the_flags_it_was_given_and_serves_a_job(
    nstack: Stack, fresh: Emulator
) -> None:
    pool = _json_reply(celery(nstack, "inspect", "stats", "-d", NODE, "--json"))["pool"]
    queues = _json_reply(celery(nstack, "inspect", "active_queues", "-d", NODE, "--json"))
    registered = _json_reply(celery(nstack, "inspect", "registered", "-d", NODE, "--json"))

    assert pool["implementation"] == "celery.concurrency.prefork:TaskPool"
    assert (pool["max-concurrency"], pool["max-tasks-per-child"]) == (3, 50)
    assert [q["name"] for q in queues] == [INTERACTIVE, BULK]
    assert registered == ["faceswap.swap"]
    [job] = nstack.submit_tagged("native", 1)
    [record] = nstack.wait_finished([job.id])
    assert record.state is JobState.SUCCEEDED


@pytest.mark.integration
def test_status_and_control_reach_the_worker(nstack: Stack) -> None:
    status = celery(nstack, "status")
    control = celery(nstack, "control", "enable_events", "-d", NODE)

    assert (status.returncode, NODE in status.stdout) == (0, True), status.stderr
    assert "1 node online" in status.stdout
    assert (control.returncode, "task events already enabled" in control.stdout) == (0, True)


@pytest.mark.integration
def test_purge_empties_a_queue(nstack: Stack, redis_client: redis.Redis) -> None:
    queue = "t-native.purge"
    redis_client.lpush(queue, *[json.dumps({"n": i}) for i in range(3)])

    done = celery(nstack, "purge", "-f", "-Q", queue, FACESWAP_BULK_QUEUE=queue)

    assert done.returncode == 0, done.stderr
    assert "Purged 3 messages" in done.stdout
    assert redis_client.llen(queue) == 0


@pytest.mark.integration
def test_events_dump_shows_a_job_finish(nstack: Stack, fresh: Emulator) -> None:
    dump = ManagedProcess(
        "events",
        python_module("celery", "-A", "faceswap_jobs", "events", "--dump"),
        nstack.logs / "native-events.log",
        nstack.env(**QUEUES, PYTHONUNBUFFERED="1"),
    )
    try:
        wait_until(lambda: "heartbeat" in dump.log_text(), 60.0, "a heartbeat", dump.log_path)
        [job] = nstack.submit_tagged("native-events", 1)
        nstack.wait_finished([job.id])

        def succeeded_shown() -> bool:
            return any(
                "task succeeded" in line and job.id in line for line in dump.log_text().splitlines()
            )

        wait_until(succeeded_shown, 60.0, "the job's task-succeeded event", dump.log_path)
    finally:
        dump.stop()


@pytest.mark.integration
def test_flower_takes_flowers_own_options(nstack: Stack) -> None:
    port = free_port()
    flower = ManagedProcess(
        "flower-native",
        python_module("faceswap_jobs", "flower", "--url_prefix=flower", f"--port={port}"),
        nstack.logs / "flower-native.log",
        nstack.env(**QUEUES, FACESWAP_FLOWER_PASSWORD=FLOWER_PASSWORD),
    )
    url = f"http://127.0.0.1:{port}/flower"
    try:
        wait_until(http_ok(f"{url}/healthcheck"), 60.0, "Flower", flower.log_path)
        anonymous = requests.get(f"{url}/api/workers", timeout=10)
        admin = requests.get(f"{url}/api/workers", auth=("admin", FLOWER_PASSWORD), timeout=10)

        assert anonymous.status_code == 401
        assert admin.status_code == 200
    finally:
        flower.stop()
    assert FLOWER_PASSWORD not in flower.log_text()
