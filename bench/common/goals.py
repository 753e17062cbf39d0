"""A bench's goals as data: each one a bound on one figure of one contender's result, so the
goals of a bench read as one table and are judged by one loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.common.report import figure_text, share_text


@dataclass(frozen=True)
class Goal:
    """`figure` of `contender`'s result must be at most (or at least) `bound`; None never meets."""

    contender: str
    text: str
    figure: str
    """A key of the result, or a dotted path into it (`revocation.after_over_remaining`)."""
    bound: float
    at_most: bool = True
    percent: bool = False

    def met(self, value: Any) -> bool:
        if value is None:
            return False
        return value <= self.bound if self.at_most else value >= self.bound

    def measured(self, result: dict[str, Any]) -> Any:
        """The figure in `result`; None where it or a dict on its path is missing."""
        value: Any = result
        for part in self.figure.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value


def evaluate_goals(
    goals: Sequence[Goal], results: list[dict[str, Any]], missing: str = "n/a"
) -> list[dict[str, Any]]:
    """One row per goal of a contender that ran: what was asked, what was measured (`shown` as
    the report prints it, `missing` where nothing was), met or not."""
    by_name = {r["name"]: r for r in results}
    rows = []
    for goal in goals:
        if (result := by_name.get(goal.contender)) is None:
            continue
        value = goal.measured(result)
        shown = share_text(value, 2) if goal.percent else figure_text(value, missing)
        rows.append({"contender": goal.contender, "goal": goal.text, "figure": goal.figure,
                     "value": value, "shown": shown, "met": goal.met(value)})  # fmt: skip
    return rows
