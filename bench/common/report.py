"""How every bench prints a goal and a figure, so a reader greps and reads all of them the same
way."""

from __future__ import annotations

from typing import Any


def goal_line(goal: str, measured: str, met: bool) -> str:
    """One goal as every bench prints it, so a reader greps all of them the same way."""
    mark = "[green]met[/green]" if met else "[red]NOT met[/red]"
    return f"{goal}: {measured} {mark}"


def figure_text(value: Any, missing: str = "n/a") -> str:
    """A figure in a table cell: three decimals below 10, one above; `missing` where nothing was
    measured (a bench may say why, as `never`)."""
    if value is None:
        return missing
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def share_text(value: float | None, digits: int) -> str:
    """A share as a percentage with `digits` decimals; n/a where nothing was measured."""
    return "n/a" if value is None else f"{value:.{digits}%}"
