"""The PNG: calls per second per token over time in scenarios 1 and 2 (the revocation marked),
successes per second of every contender side by side, and the machine's CPU, so an idle token,
a token pushed past its limit or a pool that stalls after the revocation is visible at a
glance, and told apart from a machine that was busy with something else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: the bench may run without a display

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from bench.pool.contenders import SETTLE_S
from bench.pool.report import REMAINING_PER_S, TOTAL_PER_S

STEPS: dict[str, Any] = {"drawstyle": "steps-post"}
LIMIT: dict[str, Any] = {"linestyle": "--", "linewidth": 1}


def plot(results: list[dict[str, Any]], path: Path) -> None:
    fig, axes = plt.subplots(
        4, 1, figsize=(12, 15), height_ratios=(3, 3, 3, 1.5), constrained_layout=True
    )
    by_scenario = {r["scenario"]: r for r in results}
    token_panel(axes[0], by_scenario.get("1"), "Scenario 1: calls/s per token (any outcome)")
    token_panel(
        axes[1],
        by_scenario.get("2"),
        "Scenario 2: calls/s per token, one token revoked (403 used_up) mid-run",
    )
    success_panel(axes[2], results)
    cpu_panel(axes[3], results)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def token_panel(ax: Axes, result: dict[str, Any] | None, title: str) -> None:
    ax.set(title=title, xlabel="s since first call", ylabel="calls/s")
    if result is None:
        ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
        return
    for i, token in enumerate(result["per_token"]):
        series = token["calls_per_second"]
        color = f"C{i}"
        label = f"token {token['label']} ({token['token_hash'][:6]}…)"
        _steps(ax, series, color=color, linewidth=1, label=label)
        ax.axhline(token["rate_per_s"], color=color, **LIMIT)
    if revocation := result.get("revocation"):
        at_s = revocation["revoked_at_s"]
        ax.axvline(at_s, color="black", linestyle=":", label="revoked")
        ax.axvline(at_s + SETTLE_S, color="grey", linestyle=":", label="rate after measured from")
    _legend(ax)


def success_panel(ax: Axes, results: list[dict[str, Any]]) -> None:
    for i, r in enumerate(results):
        successes = r["per_second"]["successes"]
        _steps(ax, successes, color=f"C{i + 3}", linewidth=1, label=f"{r['name']}: successes/s")
    if results:
        ax.axhline(TOTAL_PER_S, color="black", **LIMIT, label=f"{TOTAL_PER_S:g}/s (all tokens)")
        ax.axhline(REMAINING_PER_S, color="grey", **LIMIT,
                   label=f"{REMAINING_PER_S:g}/s (after the revocation)")  # fmt: skip
        _legend(ax)
    else:
        ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
    ax.set(title="Successes/s per contender", xlabel="s since first call", ylabel="calls/s")


def cpu_panel(ax: Axes, results: list[dict[str, Any]]) -> None:
    """The whole machine's CPU, sampled at every poll: a dip with the cores saturated is the
    machine's, not the pool's."""
    for i, r in enumerate(results):
        samples = r["cpu_busy"]
        ax.plot([t for t, _ in samples], [b for _, b in samples], color=f"C{i + 3}",
                linewidth=1, label=r["name"])  # fmt: skip
    ax.set(title="Machine CPU busy (both cores)", xlabel="s since first call", ylabel="%",
           ylim=(0, 105))  # fmt: skip
    if results:
        _legend(ax)


def _steps(ax: Axes, series: list[int], **style: Any) -> None:
    """Counts per second as steps, the last second drawn whole (index s covers [s, s + 1))."""
    if series:
        ax.plot(range(len(series) + 1), [*series, series[-1]], **STEPS, **style)


def _legend(ax: Axes) -> None:
    """Beside the panel, where it cannot hide a line."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
