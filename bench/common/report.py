"""How every bench prints a goal, so a reader greps all of them the same way."""

from __future__ import annotations


def goal_line(goal: str, measured: str, met: bool) -> str:
    """One goal as every bench prints it, so a reader greps all of them the same way."""
    mark = "[green]met[/green]" if met else "[red]NOT met[/red]"
    return f"{goal}: {measured} {mark}"
