"""The in-flight bench's verdicts: the issue's goals as checks, the rich tables, the PNG."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: the bench may run without a display

import matplotlib.pyplot as plt
from rich.console import Console
from rich.table import Table

from bench.common.report import figure_text, goal_line
from bench.inflight.flight import percentile
from bench.inflight.receiver_load import Answer

MIN_FRACTION_OF_LIMIT = 0.95
SYNC_MIN_IN_FLIGHT = 1500
SYNC_MAX_RSS_MB = 250.0
CALLBACK_MIN_IN_FLIGHT = 5000
CALLBACK_MAX_RSS_MB = 300.0
RECEIVER_MIN_SHARE = 0.99
"""Answered per second must be at least this share of the offered rate."""
RECEIVER_MAX_P99_MS = 50.0


def receiver_figures(answers: list[Answer], offered_per_s: float) -> dict[str, Any]:
    """Scenario C: throughput, latency percentiles and every kind of error."""
    answered = [a for a in answers if a.status is not None]
    latencies_ms = sorted(a.latency_s * 1000 for a in answered)
    last_answer_s = max((a.due_s + a.latency_s for a in answered), default=0.0)
    errors = Counter(
        (a.error or f"HTTP {a.status}") if a.status != 200 else f"outcome {a.outcome}"
        for a in answers
        if a.status != 200 or a.outcome != "succeeded"
    )
    return {
        "offered_per_s": offered_per_s,
        "sent": len(answers),
        "answered": len(answered),
        "answered_per_s": len(answered) / last_answer_s if last_answer_s else 0.0,
        "succeeded": sum(a.status == 200 and a.outcome == "succeeded" for a in answers),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(5)),
        "p50_ms": percentile(latencies_ms, 50),
        "p95_ms": percentile(latencies_ms, 95),
        "p99_ms": percentile(latencies_ms, 99),
        "max_ms": latencies_ms[-1] if latencies_ms else None,
        "max_queued_ms": max((a.queued_s for a in answers), default=0.0) * 1000,
        "latency_ms": [round(v, 2) for v in latencies_ms],
    }


def evaluate_goals(
    results: list[dict[str, Any]], receiver: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """One row per goal of the issue; a contender that did not run fails its goals."""
    by = {r["slug"]: r for r in results}
    goals = [
        _rate_goal(by.get("A-sync")),
        _goal(by.get("B-sync"), f"peak calls in flight >= {SYNC_MIN_IN_FLIGHT} in one worker",
              lambda r: r["peak_in_flight"], lambda v: v >= SYNC_MIN_IN_FLIGHT),
        _goal(by.get("B-sync"), f"worker RSS < {SYNC_MAX_RSS_MB:g} MB with them in flight",
              lambda r: r["peak_total_rss_mb"], lambda v: v < SYNC_MAX_RSS_MB),
        _rate_goal(by.get("A-callback")),
        _rate_goal(by.get("B-callback")),
        _goal(by.get("B-callback"), f"peak jobs in flight >= {CALLBACK_MIN_IN_FLIGHT}",
              lambda r: r["peak_in_flight"], lambda v: v >= CALLBACK_MIN_IN_FLIGHT),
        _goal(by.get("B-callback"),
              f"worker + receiver RSS <= {CALLBACK_MAX_RSS_MB:g} MB",
              lambda r: r["peak_total_rss_mb"], lambda v: v <= CALLBACK_MAX_RSS_MB),
    ]  # fmt: skip
    offered = receiver["offered_per_s"] if receiver else 500.0
    goals += [
        _goal(receiver and {**receiver, "slug": "C-receiver"},
              f"answers {offered:g}/s (>= {RECEIVER_MIN_SHARE:.0%}), no error, every job succeeded",
              lambda r: r["answered_per_s"],
              lambda v: v >= RECEIVER_MIN_SHARE * offered and receiver is not None
              and receiver["errors"] == 0
              and receiver["job_states"] == {"succeeded": receiver["jobs"]}),
        _goal(receiver and {**receiver, "slug": "C-receiver"},
              f"p99 < {RECEIVER_MAX_P99_MS:g} ms", lambda r: r["p99_ms"],
              lambda v: v is not None and v < RECEIVER_MAX_P99_MS),
    ]  # fmt: skip
    return goals


def _rate_goal(result: dict[str, Any] | None) -> dict[str, Any]:
    return _goal(
        result,
        f"completions/s >= {MIN_FRACTION_OF_LIMIT} x limit",
        lambda r: r["fraction_of_limit"],
        lambda v: v is not None and v >= MIN_FRACTION_OF_LIMIT,
    )


def _goal(result: dict[str, Any] | None, goal: str, value: Any, check: Any) -> dict[str, Any]:
    if not result:
        return {"contender": "(not run)", "goal": goal, "value": None, "met": False}
    measured = value(result)
    return {"contender": result["slug"], "goal": goal, "value": measured, "met": check(measured)}


def print_report(
    console: Console,
    results: list[dict[str, Any]],
    receiver: dict[str, Any] | None,
    goals: list[dict[str, Any]],
) -> None:
    if results:
        console.print(contenders_table(results))
    if receiver:
        console.print(receiver_table(receiver))
    for r in [*results, *([{"slug": "C-receiver", **receiver}] if receiver else [])]:
        logs = {**r["log_problems"], "emulator (provider)": r.get("emulator_log_problems")}
        for name, problems in logs.items():
            if not problems or not problems["count"]:
                continue
            console.print(f"[yellow]{r['slug']} {name} log: {problems['count']} warning/error "
                          f"line(s)[/yellow]")  # fmt: skip
            for kind in problems["kinds"][:4]:
                console.print(f"  {kind['count']} x {kind['example']}", markup=False)
    for goal in goals:
        text = f"{goal['contender']}: {goal['goal']}"
        console.print(goal_line(text, figure_text(goal["value"]), goal["met"]))


def contenders_table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="Calls in flight (latency per swap as run, time scale 1.0)")
    columns = (
        "contender", "pool", "done / jobs", "run", "limit /s", "done /s", "x limit",
        "peak in flight", "peak RSS MB", "CPU s / 1000 jobs", "msgs / job", "429s", "log warn",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column in ("contender", "pool") else "right")
    for r in results:
        run = f"{r['stop']} {r['run_s']:.0f} s" if r["stop"] != "done" else f"{r['wall_s']:.0f} s"
        table.add_row(
            r["slug"], r["pool"], f"{r['finished']} / {r['jobs']}", run,
            figure_text(r["limit_per_s"]), figure_text(r["completions_per_s"]),
            figure_text(r["fraction_of_limit"]),
            str(r["peak_in_flight"]), _split(r["peak_total_rss_mb"], r["peak_rss_mb"], "{:.0f}"),
            _split(r["cpu_s_per_1000"], r["cpu_s_per_1000_by_process"], "{:.1f}"),
            figure_text(r["task_deliveries"] / r["jobs"]), str(r["rate_limited"]),
            str(sum(p["count"] for p in r["log_problems"].values())),
        )  # fmt: skip
    return table


def _split(total: float | None, parts: dict[str, float | None], spec: str) -> str:
    """`220 (w 155 + r 65)` for worker + receiver; just the total for one process."""
    if total is None:
        return "n/a"
    if len(parts) < 2:
        return spec.format(total)
    inner = " + ".join(f"{name[0]} {spec.format(v or 0.0)}" for name, v in parts.items())
    return f"{spec.format(total)} ({inner})"


def receiver_table(r: dict[str, Any]) -> Table:
    table = Table(title="Scenario C: the receiver alone, open-loop signed callbacks")
    columns = ("offered /s", "sent", "answered /s", "p50 ms", "p95 ms", "p99 ms", "max ms",
               "errors", "jobs succeeded", "RSS MB", "CPU s / 1000")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(
        f"{r['offered_per_s']:g}", str(r["sent"]), figure_text(r["answered_per_s"]),
        figure_text(r["p50_ms"]), figure_text(r["p95_ms"]), figure_text(r["p99_ms"]),
        figure_text(r["max_ms"]), str(r["errors"]),
        f"{r['job_states'].get('succeeded', 0)} / {r['jobs']}", f"{r['peak_rss_mb']:.0f}",
        figure_text(r["cpu_s_per_1000"]),
    )  # fmt: skip
    return table


def plot(results: list[dict[str, Any]], receiver: dict[str, Any] | None, path: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(14, 9), constrained_layout=True)
    (done_ax, flight_ax), (rss_ax, recv_ax) = axes
    for r in results:
        style = {"label": r["slug"], "linewidth": 1.1}
        done = _rolling(r["series"]["completions"], 5)
        done_ax.plot(range(len(done)), done, **style)
        flight_ax.plot(range(len(r["series"]["in_flight"])), r["series"]["in_flight"], **style)
        rss_ax.plot([s["t_s"] for s in r["samples"]],
                    [s["rss_mb"]["total"] for s in r["samples"]], **style)  # fmt: skip
    done_ax.set(title="Completions/s (5-s mean)", xlabel="s since first submit", ylabel="jobs/s",
                yscale="symlog")  # fmt: skip
    flight_ax.set(title="Calls in flight at the provider", xlabel="s since first submit",
                  ylabel="calls")  # fmt: skip
    rss_ax.set(title="RSS of our processes (worker tree + receiver)",
               xlabel="s since first submit", ylabel="MB")  # fmt: skip
    for ax in (done_ax, flight_ax, rss_ax):
        ax.legend(loc="upper right", fontsize="small")
    if receiver and receiver["latency_ms"]:
        lat = receiver["latency_ms"]
        recv_ax.plot(lat, [(i + 1) / len(lat) for i in range(len(lat))], color="C3")
        recv_ax.axvline(RECEIVER_MAX_P99_MS, color="black", linestyle="--", linewidth=1,
                        label=f"goal: p99 < {RECEIVER_MAX_P99_MS:g} ms")  # fmt: skip
        recv_ax.axhline(0.99, color="grey", linestyle=":", linewidth=1, label="p99")
        recv_ax.legend(loc="lower right", fontsize="small")
    recv_ax.set(title=f"Receiver latency CDF at {receiver['offered_per_s'] if receiver else 0:g}"
                " callbacks/s offered", xlabel="ms (scheduled send to answer)",
                ylabel="share of callbacks", xscale="log")  # fmt: skip
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rolling(values: list[int], width: int) -> list[float]:
    out, total = [], 0
    for i, v in enumerate(values):
        total += v - (values[i - width] if i >= width else 0)
        out.append(total / min(i + 1, width))
    return out
