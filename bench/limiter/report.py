"""The issue's goals as a table of checks over the results, and the rich tables that show them."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common.goals import Goal
from bench.common.report import figure_text, goal_line, share_text
from bench.limiter.contenders import (
    BREAKER_JOBS,
    DEADLINE_JOBS,
    NOISE_CONFIGURED_PER_S,
    OUR_BURST,
    R_PER_S,
)

MIN_ACHIEVED_OVER_R = 0.95
MAX_429_SHARE = 0.005
MAX_CONVERGENCE_S = 30
MAX_ADAPTIVE_429_SHARE = 0.03
NOISE_GOAL_SHARE = 0.10
MIN_NOISE_SUCCESSES_PER_S = 0.8 * (1 - NOISE_GOAL_SHARE) * NOISE_CONFIGURED_PER_S
MAX_BREAKER_CALLS = 2
MISSING = "never"
"""How a figure that was not measured reads: most of the limiter's are moments that never came
(converged, all jobs paused)."""


def _rate_goals(name: str, max_in_1s: float, why: str) -> list[Goal]:
    """Scenarios 1 and 1b: throughput, 429s and the busiest second, for one of ours."""
    return [
        Goal(name, f"achieved / R >= {MIN_ACHIEVED_OVER_R}", "achieved_over_r",
             MIN_ACHIEVED_OVER_R, at_most=False),
        Goal(name, f"429s <= {MAX_429_SHARE:.1%} of calls", "rate_limited_share", MAX_429_SHARE,
             percent=True),
        Goal(name, f"no 1-s window above {why} = {max_in_1s:g}", "max_calls_1s", max_in_1s),
    ]  # fmt: skip


GOALS: list[Goal] = [
    *_rate_goals("ours", R_PER_S + OUR_BURST, "R + burst"),
    *_rate_goals("ours-strict-4x8", R_PER_S, "R"),
    *_rate_goals("ours-default-4x8", R_PER_S + 1, "R + 1"),
    Goal("ours-adaptive", f"converges within {MAX_CONVERGENCE_S} s", "convergence_s",
         MAX_CONVERGENCE_S),
    Goal("ours-adaptive", f"429s <= {MAX_ADAPTIVE_429_SHARE:.0%} of calls", "rate_limited_share",
         MAX_ADAPTIVE_429_SHARE, percent=True),
    Goal(f"ours-noise-{NOISE_GOAL_SHARE * 100:g}",
         f"successes/s >= 0.8 x {1 - NOISE_GOAL_SHARE:g} x {NOISE_CONFIGURED_PER_S:g} = "
         f"{MIN_NOISE_SUCCESSES_PER_S:g}", "successes_per_s", MIN_NOISE_SUCCESSES_PER_S,
         at_most=False),
    Goal("ours-breaker", f"all {BREAKER_JOBS} jobs paused (within the cap)", "paused",
         BREAKER_JOBS, at_most=False),
    Goal("ours-breaker", f"calls reaching the provider <= {MAX_BREAKER_CALLS}", "calls",
         MAX_BREAKER_CALLS),
    Goal("ours-deadline", f"all {DEADLINE_JOBS} jobs finished (within the cap)", "finished",
         DEADLINE_JOBS, at_most=False),
    Goal("ours-deadline", "calls started after their job's deadline = 0", "late_calls", 0),
]  # fmt: skip
"""The issue's goals, plus two preconditions (every breaker job paused, every deadline job
finished) without which the figure beside them would not mean what it says."""


def print_report(console: Console, results: list[dict[str, Any]], goals: list[dict[str, Any]]):
    drained = [r for r in results if r["scenario"] in ("1", "1b", "2", "3")]
    for table, rows in (
        (results_table, drained),
        (adaptive_table, [r for r in results if r["scenario"] == "2"]),
        (noise_table, [r for r in results if r["scenario"] == "3"]),
        (breaker_table, [r for r in results if r["scenario"] == "breaker"]),
        (deadline_table, [r for r in results if r["scenario"] == "deadline"]),
    ):
        if rows:
            console.print(table(rows))
    for goal in goals:
        console.print(goal_line(f"{goal['contender']}: {goal['goal']}", goal["shown"], goal["met"]))


def _table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title)
    for column in columns:
        if column == "contender":
            table.add_column(column, no_wrap=True)
        else:
            table.add_column(column, justify="right")
    return table


def results_table(results: list[dict[str, Any]]) -> Table:
    table = _table("Calls as the provider saw them (emulator ledger)", (
        "contender", "scenario", "workers", "provider", "configured", "done / jobs", "wall s",
        "calls", "429s", "429 share", "achieved / R", "max calls in 1 s",
    ))  # fmt: skip
    for r in results:
        wall = "capped" if r["capped"] else _fmt(r["wall_s"])
        refused = r["rate_limited"] + r.get("fault_429s", 0)  # scenario 3: random 429s too
        table.add_row(
            r["name"], r["scenario"], f"{r['instances']}x{r['concurrency']}", _provider(r),
            r["configured"], f"{r['finished']} / {r['jobs']}", wall, str(r["calls"]),
            str(refused), share_text(refused / r["calls"] if r["calls"] else 0.0, 2),
            "n/a" if r["achieved_over_r"] is None else f"{r['achieved_over_r']:.3f}",
            str(r["max_calls_1s"]),
        )  # fmt: skip
    return table


def adaptive_table(results: list[dict[str, Any]]) -> Table:
    table = _table("Scenario 2: configured above the provider's real limit", (
        "contender", "429 share", "429 share after 30 s", "convergence s (rate ±15%)",
        "achieved / R after 30 s", "good 5-s windows after 30 s", "all 5-s windows good from",
    ))  # fmt: skip
    for r in results:
        after = r["achieved_over_r_after_30s"]
        table.add_row(
            r["name"], share_text(r["rate_limited_share"], 2),
            share_text(r["rate_limited_share_after_30s"], 2), _fmt(r["convergence_s"]),
            "n/a" if after is None else f"{after:.3f}",
            share_text(r["good_window_share_after_30s"], 0),
            _fmt(r["strict_window_convergence_s"]),
        )  # fmt: skip
    return table


def noise_table(results: list[dict[str, Any]]) -> Table:
    table = _table("Scenario 3: random 429s, no provider limit, ours at 30/s", (
        "contender", "noise share", "successes/s", "429 share", "of (1 - noise) x 30",
        "lowest effective rate", "wall s",
    ))  # fmt: skip
    for r in sorted(results, key=lambda r: r["noise_share"]):
        table.add_row(
            r["name"], share_text(r["noise_share"], 0), f"{r['successes_per_s']:.2f}",
            share_text(r["share_429"], 2), f"{r['successes_per_s_over_ideal']:.3f}",
            _fmt(r["min_effective_rate"]), "capped" if r["capped"] else _fmt(r["wall_s"]),
        )  # fmt: skip
    return table


def breaker_table(results: list[dict[str, Any]]) -> Table:
    table = _table("Breaker: a revoked token (every call 401 invalid_token)", (
        "contender", "workers", "paused / jobs", "all paused after s", "calls", "outcomes",
    ))  # fmt: skip
    for r in results:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items())) or "none"
        table.add_row(
            r["name"], f"{r['instances']}x{r['concurrency']}", f"{r['paused']} / {r['jobs']}",
            f"capped ({r['cap_s']:g})" if r["capped"] else _fmt(r["all_paused_s"]),
            str(r["calls"]), outcomes,
        )  # fmt: skip
    return table


def deadline_table(results: list[dict[str, Any]]) -> Table:
    table = _table("Deadline: more jobs than the rate can serve before their deadline", (
        "contender", "configured", "done / jobs", "succeeded", "failed deadline_exceeded",
        "failed other", "calls", "calls after deadline", "latest call vs deadline s",
    ))  # fmt: skip
    for r in results:
        latest = r["latest_call_vs_deadline_s"]
        table.add_row(
            r["name"], r["configured"], f"{r['finished']} / {r['jobs']}", str(r["succeeded"]),
            str(r["failed_deadline"]), str(r["failed_other"]), str(r["calls"]),
            str(r["late_calls"]), "n/a" if latest is None else f"{latest:+.2f}",
        )  # fmt: skip
    return table


def _provider(r: dict[str, Any]) -> str:
    if r["provider_per_s"] is None:
        return "none" + (f", {r['fault_429']:.0%} 429s" if r["fault_429"] else "")
    return f"{r['provider_per_s']:g}/s {r['rate_window']}"


def _fmt(value: Any) -> str:
    return figure_text(value, MISSING)
