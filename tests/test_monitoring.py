"""Observability: latency histograms in Redis, the exporter's paths, JSON logs, and the Grafana
dashboard and alert rules in deploy/monitoring checked against what the exporter really emits."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import yaml

from faceswap_jobs.config import Settings
from faceswap_jobs.jobs.histograms import (
    CALL_BUCKETS,
    bucket_for,
    parse,
    series,
)
from faceswap_jobs.jobs.parking import ParkingLot
from faceswap_jobs.jobs.waits import ready_since
from faceswap_jobs.keys import Keys
from faceswap_jobs.limits.roster import Roster
from faceswap_jobs.logformat import JsonFormatter, redact
from faceswap_jobs.models import Attempt, JobRecord, JobState, SwapRequest
from faceswap_jobs.ops.metrics import RedisStatsCollector
from faceswap_jobs.ops.sandbox import ManagedProcess, free_port, http_ok, python_module, wait_until
from tests.support.emulator import API_TOKEN, Emulator
from tests.support.jobs import unique_tag
from tests.support.stack import Stack, own_queues

MONITORING = Path(__file__).resolve().parents[1] / "deploy" / "monitoring"
QUEUES = own_queues("monitoring")
INTERACTIVE = QUEUES["FACESWAP_INTERACTIVE_QUEUE"]
PROMQL_WORDS = {
    "sum", "by", "rate", "histogram_quantile", "clamp_min", "max", "min", "and", "or", "unless",
    "delta", "le", "on", "without", "increase", "avg", "count", "offset", "bool", "absent",
}  # fmt: skip
"""PromQL functions, keywords and the `le` label: identifiers in an expression that are no
metric."""
FAMILY_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


# --- histograms, ready time, redaction: pure parts -------------------------------------------


def test_an_observation_lands_in_the_smallest_bucket_that_holds_it() -> None:
    assert bucket_for(CALL_BUCKETS, 0.0) == "0.05"
    assert bucket_for(CALL_BUCKETS, 0.05) == "0.05"
    assert bucket_for(CALL_BUCKETS, 0.06) == "0.1"
    assert bucket_for(CALL_BUCKETS, 1e6) == "+Inf"


def test_buckets_read_back_cumulative_with_count_from_the_buckets() -> None:
    prefix = series({"queue": "q", "result": "ok"})
    raw = {f"{prefix}|0.05": "2", f"{prefix}|1.0": "1", f"{prefix}|+Inf": "1",
           f"{prefix}|sum": "99.5", "garbage": "x", f"{prefix}|0.1": "not a number"}  # fmt: skip
    [hist] = parse(raw, CALL_BUCKETS)
    cumulative = dict(hist.buckets)
    assert hist.labels == {"queue": "q", "result": "ok"}
    assert (cumulative["0.05"], cumulative["0.5"], cumulative["1.0"], cumulative["+Inf"]) == (
        2,
        2,
        3,
        4,
    )
    assert hist.count == 4 and hist.sum == 99.5


def test_a_label_value_cannot_forge_another_series() -> None:
    assert series({"queue": "a,result=x|sum"}) == "queue=a_result_x_sum"


def _record(**fields: Any) -> JobRecord:
    base: dict[str, Any] = {
        "id": "j", "state": JobState.QUEUED, "queue": "q", "created_at": 100.0,
        "updated_at": 100.0, "request": SwapRequest(source_image_url="https://a.example/s.png",
                                                    target_image_url="https://a.example/t.png"),
    }  # fmt: skip
    return JobRecord(**{**base, **fields})


def test_ready_since_is_the_send_or_the_end_of_the_retry_countdown() -> None:
    assert ready_since(_record()) == 100.0
    assert ready_since(_record(updated_at=130.0, calls=1)) == 130.0
    retried = Attempt(number=1, started_at=110.0, ended_at=112.0, outcome="retry", delay_s=3.0)
    assert ready_since(_record(state=JobState.RETRY_WAIT, history=[retried])) == 115.0
    interrupted = Attempt(number=1, started_at=110.0, ended_at=112.0, outcome="interrupted")
    assert ready_since(_record(state=JobState.RETRY_WAIT, history=[interrupted])) is None
    assert ready_since(_record(batch="b")) is None, "a bulk row's send time is not known"
    assert ready_since(_record(batch="b", updated_at=150.0)) == 150.0


def test_json_lines_carry_job_fields_and_no_secret() -> None:
    formatter = JsonFormatter(["s3cret-token-value"])
    record = logging.LogRecord("w", logging.WARNING, __file__, 1,
                               "job %s failed: sent s3cret-token-value to https://u:pw@h/x, "
                               "Authorization: Bearer abc.def", ("j1",), None)  # fmt: skip
    record.__dict__.update(job_id="j1", attempt=2, error_code="server_error", batch=None)
    line = json.loads(formatter.format(record))
    assert line["level"] == "warning" and line["logger"] == "w"
    assert (line["job_id"], line["attempt"], line["error_code"]) == ("j1", 2, "server_error")
    assert "batch" not in line
    for secret in ("s3cret-token-value", "u:pw@", "abc.def"):
        assert secret not in line["message"]


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "job 1f2e failed: 500 server_error (trace_id=abc)"
    assert redact(text, ["", "zzz"]) == text
    assert redact("token=abc123 password: hunter2") == "token=*** password: ***"


# --- the dashboard and the rules, against what the exporter emits ----------------------------


def emitted_names(settings: Settings, client: redis.Redis) -> set[str]:
    """Every sample name the exporter can emit, from its families (a counter `x` is emitted as
    `x_total`, a histogram as `x_bucket`, `x_count`, `x_sum`), plus `faceswap_redis_up` and
    Prometheus's own `up`."""
    collector = RedisStatsCollector(
        settings, client, Roster(settings, client), ParkingLot(client, Keys(settings.key_prefix))
    )
    names = {"faceswap_redis_up", "up"}
    for family in collector.collect():
        suffixes = FAMILY_SUFFIXES.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers outside `{...}`, `[...]`, strings and
    `by (...)` lists that are not PromQL words or numbers."""
    bare = re.sub(r'"[^"]*"|\{[^}]*\}|\[[^\]]*\]', " ", expr)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    bare = re.sub(r"(?<![A-Za-z0-9_:])\d+(\.\d+)?([eE][+-]?\d+)?", " ", bare)
    return {w for w in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare) if w not in PROMQL_WORDS}


def test_metric_names_follow_prometheus_conventions(settings: Settings, redis_client: redis.Redis)\
        -> None:  # fmt: skip
    names = emitted_names(settings, redis_client) - {"up"}
    assert all(re.fullmatch(r"faceswap_[a-z0-9_]+", n) for n in names), names
    assert "faceswap_calls_total" in names and "faceswap_queue_wait_seconds_bucket" in names
    for name in names:
        assert not name.endswith(("_ms", "_milliseconds", "_minutes", "_kb", "_mb")), name


def test_the_dashboard_is_grafana_json_reading_only_emitted_metrics(
    settings: Settings, redis_client: redis.Redis
) -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    emitted = emitted_names(settings, redis_client)

    assert isinstance(dashboard["title"], str) and dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int)
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    read: set[str] = set()
    for panel in panels:
        assert panel["type"] in ("timeseries", "stat", "gauge", "table"), panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] >= 0 and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert re.fullmatch(r"[A-Z]", target["refId"])
            names = metric_names(target["expr"])
            assert names and names <= emitted, (panel["title"], names - emitted)
            read |= names
    for wanted in (
        "faceswap_call_duration_seconds_bucket",
        "faceswap_queue_wait_seconds_bucket",
        "faceswap_breaker_state",
        "faceswap_dead_letters",
        "faceswap_redis_up",
        "faceswap_queue_length",
        "faceswap_in_flight",
        "faceswap_calls_total",
    ):
        assert wanted in read, wanted  # fmt: skip


def test_alert_rules_are_complete_and_read_only_emitted_metrics(
    settings: Settings, redis_client: redis.Redis
) -> None:
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    emitted = emitted_names(settings, redis_client)
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]

    assert all(group["name"] and group["rules"] for group in rules["groups"])
    for alert in alerts:
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", alert["alert"])
        assert re.fullmatch(r"\d+[smh]", alert["for"]), alert["alert"]
        assert alert["labels"]["severity"] in ("critical", "warning")
        assert alert["annotations"]["summary"]
        names = metric_names(alert["expr"])
        assert names and names <= emitted, (alert["alert"], names - emitted)
    names = {alert["alert"] for alert in alerts}
    for wanted in (
        "BreakerOpen",
        "High429Share",
        "OldestJobAge",
        "DLQGrowing",
        "WorkersDown",
        "RedisDown",
    ):
        assert f"FaceSwap{wanted}" in names  # fmt: skip


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules() -> None:
    subprocess.run(["promtool", "check", "rules", str(MONITORING / "alerts.yaml")], check=True)


# --- a real worker, a real exporter ----------------------------------------------------------


def scrape(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line.startswith("faceswap_"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


@pytest.mark.integration
def test_a_json_logging_worker_fills_the_histograms_the_exporter_serves(
    stack: Stack, emulator: Emulator
) -> None:
    emulator.reset()
    stack.use_queues(QUEUES)
    port = free_port()
    exporter = ManagedProcess(
        "monitoring-metrics",
        python_module("faceswap_jobs", "metrics", "--port", str(port)),
        stack.logs / "monitoring-metrics.log",
        stack.env(**QUEUES),
    )
    base = f"http://127.0.0.1:{port}"
    tag = unique_tag()
    try:
        wait_until(http_ok(f"{base}/healthz"), 30.0, "metrics exporter", exporter.log_path)
        before = scrape(requests.get(f"{base}/metrics", timeout=5).text)
        emulator.configure(rules=[{"source_contains": f"{tag}-0", "status": 429,
                                   "code": "too_many_requests", "times": 1}])  # fmt: skip
        worker = stack.start_worker(
            "monitoring", "--concurrency=2", FACESWAP_LOG_FORMAT="json", **QUEUES
        )
        jobs = stack.submit_tagged(tag, 4)
        records = stack.wait_finished([job.id for job in jobs], timeout_s=90)
        after = scrape(requests.get(f"{base}/metrics", timeout=5).text)
        paths = {p: requests.get(f"{base}{p}", timeout=5).status_code
                 for p in ("/healthz", "/readyz", "/", "/metrics/x")}  # fmt: skip
    finally:
        stack.stop_workers()
        exporter.stop()

    assert [r.state for r in records] == [JobState.SUCCEEDED] * 4
    assert paths == {"/healthz": 200, "/readyz": 200, "/": 404, "/metrics/x": 404}

    def grew(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    ok = f'faceswap_call_duration_seconds_count{{queue="{INTERACTIVE}",result="ok"}}'
    limited = f'faceswap_call_duration_seconds_count{{queue="{INTERACTIVE}",result="429"}}'
    assert (grew(ok), grew(limited)) == (4, 1)
    ok_inf = f'faceswap_call_duration_seconds_bucket{{le="+Inf",queue="{INTERACTIVE}",result="ok"}}'
    assert grew(ok_inf) == 4
    waits = f'faceswap_queue_wait_seconds_count{{queue="{INTERACTIVE}"}}'
    assert grew(waits) == 5, "every call started after a wait: 4 first sends, 1 retry"
    assert after["faceswap_redis_up"] == 1

    lines = worker.log_path.read_text().splitlines()
    objects = [json.loads(line) for line in lines if line.startswith("{")]
    assert objects and all({"time", "level", "logger", "message"} <= set(o) for o in objects)
    events = [o for o in objects if o.get("job_id") in {job.id for job in jobs}]
    succeeded = [o for o in events if "succeeded after" in o["message"]]
    assert len(succeeded) == 4 and all(o["attempt"] >= 1 for o in succeeded)
    [deferred] = [o for o in events if o.get("error_code") == "too_many_requests"]
    assert deferred["attempt"] == 1
    assert API_TOKEN not in worker.log_path.read_text()
