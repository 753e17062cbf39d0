"""The issue's goals as checks over the results, and the rich tables that show them."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common.goals import Goal
from bench.common.report import figure_text, goal_line, share_text
from bench.pool.contenders import REVOKED_RATE, TOKEN_RATES

MIN_ACHIEVED = 0.95
MAX_429_SHARE = 0.005
TOTAL_PER_S = sum(TOKEN_RATES)
REMAINING_PER_S = TOTAL_PER_S - REVOKED_RATE


def _finished(name: str) -> Goal:
    return Goal(name, "unfinished jobs = 0 (all finished within the cap)", "unfinished", 0)


GOALS: list[Goal] = [
    _finished("pool"),
    Goal("pool", f"successes/s >= {MIN_ACHIEVED} x {TOTAL_PER_S:g}/s", "achieved_over_target",
         MIN_ACHIEVED, at_most=False),
    Goal("pool", f"429s <= {MAX_429_SHARE:.1%} of calls", "rate_limited_share", MAX_429_SHARE,
         percent=True),
    _finished("pool-revoke"),
    Goal("pool-revoke", "no job failed", "failed", 0),
    Goal("pool-revoke", f"successes/s after the revocation >= {MIN_ACHIEVED} x "
         f"{REMAINING_PER_S:g}/s", "revocation.after_over_remaining", MIN_ACHIEVED, at_most=False),
    Goal("pool", "no token in the worker logs (project rule)", "log_token_leaks", 0),
    Goal("pool-revoke", "no token in the worker logs (project rule)", "log_token_leaks", 0),
    Goal("one-token", "no token in the worker logs (project rule)", "log_token_leaks", 0),
]  # fmt: skip
"""The issue's goals, the preconditions that make them mean what they say (every job of a pool
run finished), and the project's rule that a token is never logged. The one-token baseline has
no goal of its own: it shows what a pool buys."""


def print_report(
    console: Console, results: list[dict[str, Any]], goals: list[dict[str, Any]]
) -> None:
    console.print(results_table(results))
    console.print(token_table(results))
    revoked = [r for r in results if r.get("revocation")]
    if revoked:
        console.print(revocation_table(revoked))
    for r in results:
        if r["log_warnings"]:
            console.print(f"{r['name']}: {r['log_warnings']} warning/error lines in the worker "
                          f"logs, e.g. {r['log_sample'][:2]}")  # fmt: skip
    for goal in goals:
        console.print(goal_line(f"{goal['contender']}: {goal['goal']}", goal["shown"], goal["met"]))


SUMMARY_FIGURES = (
    "scenario", "jobs", "finished", "failed", "capped", "wall_s", "calls", "successes",
    "rate_limited", "rate_limited_share", "outcomes", "successes_per_s", "achieved_over_target",
    "submit_s", "cpu_busy_mean", "log_warnings", "log_token_leaks",
)  # fmt: skip
"""What the printed JSON keeps of each result; `pool.json` has everything, series included."""


def summary(results: list[dict[str, Any]], goals: list[dict[str, Any]]) -> dict[str, Any]:
    """The run in one JSON object small enough to read on a terminal: figures without series."""
    contenders = {}
    for r in results:
        row = {name: r[name] for name in SUMMARY_FIGURES}
        row["per_token"] = {
            t["label"]: {k: t[k] for k in ("calls", "successes", "rate_limited", "used_up")}
            for t in r["per_token"]
        }
        if r.get("revocation"):
            row["revocation"] = r["revocation"]
        contenders[r["name"]] = row
    verdicts = [{k: g[k] for k in ("contender", "goal", "value", "met")} for g in goals]
    return {"contenders": contenders, "goals": verdicts}


def _table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title)
    for column in columns:
        left = column in ("contender", "outcomes")
        table.add_column(column, no_wrap=column == "contender", justify="left" if left else "right")
    return table


def results_table(results: list[dict[str, Any]]) -> Table:
    table = _table("Calls as the provider saw them (emulator ledger)", (
        "contender", "scenario", "tokens", "workers", "done / jobs", "failed", "wall s", "calls",
        "429s", "429 share", "outcomes", "successes/s", f"of {TOTAL_PER_S:g}/s",
        "of its tokens", "submit s", "CPU busy",
    ))  # fmt: skip
    for r in results:
        wall = f"capped ({r['cap_s']:.0f})" if r["capped"] else figure_text(r["wall_s"])
        others = {k: v for k, v in r["outcomes"].items() if k not in ("success", "rate_limited")}
        table.add_row(
            r["name"], r["scenario"], "+".join(f"{x:g}" for x in r["rates"]) + "/s",
            f"{r['instances']}x{r['concurrency']}", f"{r['finished']} / {r['jobs']}",
            str(r["failed"]), wall, str(r["calls"]), str(r["rate_limited"]),
            share_text(r["rate_limited_share"], 2),
            ", ".join(f"{k} {v}" for k, v in sorted(others.items())) or "-",
            f"{r['successes_per_s']:.2f}", f"{r['successes_per_s'] / TOTAL_PER_S:.3f}",
            f"{r['achieved_over_target']:.3f}", f"{r['submit_s']:.1f}",
            f"{r['cpu_busy_mean']:.0f}%",
        )  # fmt: skip
    return table


def token_table(results: list[dict[str, Any]]) -> Table:
    table = _table("Per token (ledger token_hash)", (
        "contender", "token", "limit", "calls", "successes", "share of successes", "429s",
        "403 used_up", "max calls in 1 s",
    ))  # fmt: skip
    for r in results:
        for t in r["per_token"]:
            if not t["calls"]:
                continue
            table.add_row(
                r["name"], t["token_hash"], t["label"], str(t["calls"]), str(t["successes"]),
                share_text(t["successes"] / r["successes"] if r["successes"] else None, 1),
                str(t["rate_limited"]), str(t["used_up"]), str(t["max_calls_1s"]),
            )  # fmt: skip
    return table


def revocation_table(results: list[dict[str, Any]]) -> Table:
    table = _table(f"Scenario 2: the {REVOKED_RATE:g}/s token revoked (403 used_up) mid-run", (
        "contender", "revoked at s", "jobs done then", "successes/s after (+settle)",
        f"of {REMAINING_PER_S:g}/s", "429 share after", "calls to it after", "last of them s",
    ))  # fmt: skip
    for r in results:
        v = r["revocation"]
        rate = v["successes_per_s_after"]
        table.add_row(
            r["name"], f"{v['revoked_at_s']:.1f}", str(r["revoked_after_jobs"]),
            "n/a" if rate is None else f"{rate:.2f} (+{v['settle_s']:g} s)",
            figure_text(v["after_over_remaining"]), share_text(v["rate_limited_share_after"], 2),
            str(v["revoked_calls_after"]), figure_text(v["last_revoked_call_after_s"]),
        )  # fmt: skip
    return table
