"""The PNG: calls per second over time per contender (scenario 1), and scenario 2's successes
and 429s per second, so a collapse or a 429 storm is visible at a glance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: the bench may run without a display

import matplotlib.pyplot as plt


def plot(results: list[dict[str, Any]], path: Path, *, r_per_s: float) -> None:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), constrained_layout=True)
    for r in (r for r in results if r["scenario"] == 1):
        calls = r["per_second"]["calls"]
        top.plot(range(len(calls)), calls, label=r["name"], linewidth=1.2, drawstyle="steps-post")
    top.axhline(r_per_s, color="black", linestyle="--", linewidth=1, label=f"R = {r_per_s:g}/s")
    top.set(
        title="Scenario 1: calls/s reaching the provider (all outcomes)",
        xlabel="s since first submit",
        ylabel="calls/s",
    )
    top.legend(loc="upper right")
    for r in (r for r in results if r["scenario"] == 2):
        series = r["per_second"]
        seconds = range(len(series["calls"]))
        bottom.plot(
            seconds,
            series["successes"],
            label=f"{r['name']}: successes/s",
            color="C2",
            drawstyle="steps-post",
        )
        bottom.plot(
            seconds,
            series["rate_limited"],
            label=f"{r['name']}: 429s/s",
            color="C3",
            drawstyle="steps-post",
        )
        bottom.axhline(
            r["provider_per_s"],
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"provider limit {r['provider_per_s']:g}/s (configured {r['configured']})",
        )
        rates = r.get("effective_rate") or []
        bottom.plot(
            [t for t, _ in rates],
            [rate for _, rate in rates],
            label=f"{r['name']}: limiter's effective rate",
            color="C0",
            linewidth=1,
        )
        if r.get("convergence_s") is not None:
            bottom.axvline(
                r["convergence_s"], color="grey", linestyle=":", label="converged (see README)"
            )
    bottom.set(
        title="Scenario 2: configured 40/s, provider allows 15/s",
        xlabel="s since first submit",
        ylabel="calls/s",
    )
    bottom.legend(loc="upper right")
    fig.savefig(path, dpi=110)
    plt.close(fig)
