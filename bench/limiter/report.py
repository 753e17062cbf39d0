"""The issue's goals as checks over the results, and the rich tables that show them."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common.report import goal_line

MIN_ACHIEVED_OVER_R = 0.95
MAX_429_SHARE = 0.005
MAX_CONVERGENCE_S = 30
MAX_ADAPTIVE_429_SHARE = 0.03


def evaluate_goals(
    results: list[dict[str, Any]], *, r_per_s: float, burst: int
) -> list[dict[str, Any]]:
    """One row per goal: which contender, what was asked, what was measured, met or not."""
    by_name = {r["name"]: r for r in results}
    goals = []
    if ours := by_name.get("ours"):
        goals += [
            _goal("ours", f"achieved / R >= {MIN_ACHIEVED_OVER_R}", ours["achieved_over_r"],
                  ours["achieved_over_r"] >= MIN_ACHIEVED_OVER_R),
            _goal("ours", f"429s <= {MAX_429_SHARE:.1%} of calls", ours["rate_limited_share"],
                  ours["rate_limited_share"] <= MAX_429_SHARE),
            _goal("ours", f"no 1-s window above R + burst = {r_per_s + burst:g}",
                  ours["max_calls_1s"], ours["max_calls_1s"] <= r_per_s + burst),
        ]  # fmt: skip
    if adaptive := by_name.get("ours-adaptive"):
        converged = adaptive["convergence_s"]
        goals += [
            _goal("ours-adaptive", f"converges within {MAX_CONVERGENCE_S} s", converged,
                  converged is not None and converged <= MAX_CONVERGENCE_S),
            _goal("ours-adaptive", f"429s <= {MAX_ADAPTIVE_429_SHARE:.0%} of calls",
                  adaptive["rate_limited_share"],
                  adaptive["rate_limited_share"] <= MAX_ADAPTIVE_429_SHARE),
        ]  # fmt: skip
    return goals


def _goal(contender: str, goal: str, value: Any, met: bool) -> dict[str, Any]:
    return {"contender": contender, "goal": goal, "value": value, "met": met}


def print_report(console: Console, results: list[dict[str, Any]], goals: list[dict[str, Any]]):
    console.print(results_table(results))
    console.print(adaptive_table([r for r in results if r["scenario"] == 2]))
    for goal in goals:
        text = f"{goal['contender']}: {goal['goal']}"
        console.print(goal_line(text, _fmt(goal["value"]), goal["met"]))


def results_table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="Calls as the provider saw them (emulator ledger)")
    for column in (
        "contender", "provider R", "configured", "done / jobs", "wall s", "calls",
        "429s", "429 share", "achieved / R", "max calls in 1 s",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column == "contender" else "right")
    for r in results:
        wall = "capped" if r["capped"] else _fmt(r["wall_s"])
        table.add_row(
            r["name"], f"{r['provider_per_s']:g}/s", r["configured"],
            f"{r['finished']} / {r['jobs']}", wall, str(r["calls"]), str(r["rate_limited"]),
            f"{r['rate_limited_share']:.2%}", f"{r['achieved_over_r']:.3f}",
            str(r["max_calls_1s"]),
        )  # fmt: skip
    return table


def adaptive_table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="Scenario 2: configured above the provider's real limit")
    for column in (
        "contender", "429 share", "429 share after 30 s", "convergence s (rate ±15%)",
        "achieved / R after 30 s", "good 5-s windows after 30 s", "all 5-s windows good from",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column == "contender" else "right")
    for r in results:
        table.add_row(
            r["name"],
            _pct(r["rate_limited_share"], 2),
            _pct(r["rate_limited_share_after_30s"], 2),
            _fmt(r["convergence_s"]),
            "n/a"
            if r["achieved_over_r_after_30s"] is None
            else f"{r['achieved_over_r_after_30s']:.3f}",
            _pct(r["good_window_share_after_30s"], 0),
            _fmt(r["strict_window_convergence_s"]),
        )
    return table


def _pct(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}%}"


def _fmt(value: Any) -> str:
    if value is None:
        return "never"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 1 else f"{value:.1f}"
    return str(value)
