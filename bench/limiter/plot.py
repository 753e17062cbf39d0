"""The PNG: calls per second over time per contender (scenarios 1 and 1b), scenario 2's
successes and 429s per second, and scenario 3's successes per second, over time and against
the share of random 429s, so a collapse, a 429 storm or a costly dip is visible at a glance.
The breaker and the deadline are single counts: the tables show them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: the bench may run without a display

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from bench.limiter.contenders import NOISE_CONFIGURED_PER_S, R_PER_S
from bench.limiter.report import MIN_NOISE_SUCCESSES_PER_S, NOISE_GOAL_SHARE

STEPS = {"drawstyle": "steps-post"}
LIMIT = {"color": "black", "linestyle": "--", "linewidth": 1}


def plot(results: list[dict[str, Any]], path: Path) -> None:
    fig, axes = plt.subplot_mosaic(
        [["rate", "rate"], ["adaptive", "adaptive"], ["noise", "curve"]],
        figsize=(12, 12),
        constrained_layout=True,
    )
    of = {s: [r for r in results if r["scenario"] == s] for s in ("1", "1b", "2", "3")}
    rate_panel(axes["rate"], of["1"] + of["1b"])
    adaptive_panel(axes["adaptive"], of["2"])
    noise_panel(axes["noise"], of["3"])
    curve_panel(axes["curve"], of["3"])
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rate_panel(ax: Axes, results: list[dict[str, Any]]) -> None:
    for r in results:
        calls = r["per_second"]["calls"]
        style = "-" if r["scenario"] == "1" else "-."
        label = f"{r['name']} ({r['provider_per_s']:g}/s {r['rate_window']})"
        ax.plot(range(len(calls)), calls, style, label=label, linewidth=1.2, **STEPS)
    if results:
        ax.axhline(R_PER_S, **LIMIT, label=f"R = {R_PER_S:g}/s")
    ax.set(
        title="Scenarios 1 (bucket, 2x2) and 1b (sliding window, 4x8): calls/s reaching the "
        "provider (all outcomes)",
        xlabel="s since first submit",
        ylabel="calls/s",
    )
    _finish(ax, results)


def adaptive_panel(ax: Axes, results: list[dict[str, Any]]) -> None:
    for r in results:
        series = r["per_second"]
        seconds = range(len(series["calls"]))
        ax.plot(
            seconds, series["successes"], label=f"{r['name']}: successes/s", color="C2", **STEPS
        )
        ax.plot(seconds, series["rate_limited"], label=f"{r['name']}: 429s/s", color="C3", **STEPS)
        ax.axhline(
            r["provider_per_s"],
            **LIMIT,
            label=f"provider limit {r['provider_per_s']:g}/s (configured {r['configured']})",
        )
        _effective_rate(ax, r, label=f"{r['name']}: limiter's effective rate", color="C0")
        if r.get("convergence_s") is not None:
            ax.axvline(
                r["convergence_s"], color="grey", linestyle=":", label="converged (see README)"
            )
    ax.set(
        title="Scenario 2: configured 40/s, provider allows 15/s",
        xlabel="s since first submit",
        ylabel="calls/s",
    )
    _finish(ax, results)


def _effective_rate(ax: Axes, result: dict[str, Any], **style: Any) -> None:
    """The limiter's effective rate as sampled during the run (time, calls/s pairs)."""
    rates = result.get("effective_rate") or []
    ax.plot([t for t, _ in rates], [rate for _, rate in rates], linewidth=1, **style)


def noise_panel(ax: Axes, results: list[dict[str, Any]]) -> None:
    for i, r in enumerate(sorted(results, key=lambda r: r["noise_share"])):
        successes = r["per_second"]["successes"]
        ax.plot(
            range(len(successes)),
            successes,
            color=f"C{i}",
            linewidth=1,
            label=f"{r['name']}: successes/s",
            **STEPS,
        )
        _effective_rate(ax, r, label=f"{r['name']}: effective rate", color=f"C{i}", linestyle=":")
    if results:
        ax.axhline(
            NOISE_CONFIGURED_PER_S, **LIMIT, label=f"configured {NOISE_CONFIGURED_PER_S:g}/s"
        )
    ax.set(title="Scenario 3: successes/s, random 429s", xlabel="s since first submit",
           ylabel="calls/s")  # fmt: skip
    _finish(ax, results)


def curve_panel(ax: Axes, results: list[dict[str, Any]]) -> None:
    ordered = sorted(results, key=lambda r: r["noise_share"])
    shares = [100 * r["noise_share"] for r in ordered]
    if ordered:
        ax.plot(shares, [r["successes_per_s"] for r in ordered], "o-", label="measured")
        ax.plot(
            shares,
            [(1 - s / 100) * NOISE_CONFIGURED_PER_S for s in shares],
            **LIMIT,
            label=f"(1 - noise) x {NOISE_CONFIGURED_PER_S:g}",
        )
        ax.plot(
            [100 * NOISE_GOAL_SHARE],
            [MIN_NOISE_SUCCESSES_PER_S],
            "v",
            color="C3",
            label=f"goal at {NOISE_GOAL_SHARE:.0%}: >= {MIN_NOISE_SUCCESSES_PER_S:g}",
        )
    ax.set(title="Scenario 3: successes/s over the run", xlabel="random 429s, % of calls",
           ylabel="successes/s")  # fmt: skip
    _finish(ax, ordered)


def _finish(ax: Axes, results: list[dict[str, Any]]) -> None:
    """A legend, or "not run" when no contender of this panel ran."""
    if results:
        ax.legend(loc="best", fontsize="small")
    else:
        ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
