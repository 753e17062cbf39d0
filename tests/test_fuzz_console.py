"""Property-based: untrusted text rendered through `shown` / `printable` reaches a terminal as
the same characters, never as markup (`[/]`, `[link=...]`) nor as control sequences (`ESC[2J`)."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table

from faceswap_jobs.ops.console import printable, shown
from tests.support.hostile import fuzz

FUZZ = fuzz(200)
PIECES = [
    "[/]",
    "[link=https://evil.example]",
    "[/link]",
    "[bold red]",
    "[",
    "]",
    "\\[",
    "\\",
    "\x1b[2J",
    "\x1b]8;;https://evil.example\x1b\\",
    "\x1b]0;title\x07",
    "\x9b31m",
    "\r",
    "\n",
    "\t",
    "\x08",
    "\x00",
    "\x7f",
    "\u202e",
    "\u200b",
    "\ud800",
    ":smile:",
    "%s",
]
untrusted = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), max_size=12).map(
    "".join
)


def _render(*renderables: object, terminal: bool) -> str:
    out = io.StringIO()
    console = Console(
        file=out,
        force_terminal=terminal,
        color_system="truecolor" if terminal else None,
        width=400,
        emoji=True,
        highlight=False,
        soft_wrap=True,
    )
    console.print(*renderables)
    return out.getvalue()


def _no_control(text: str) -> None:
    assert all(ch.isprintable() or ch == "\n" for ch in text), repr(text)


@FUZZ
@given(text=untrusted)
def test_printable_keeps_every_visible_character_and_nothing_else(text: str) -> None:
    cleaned = printable(text)
    assert len(cleaned) == len(text)
    assert cleaned.isprintable()
    for before, after in zip(text, cleaned, strict=True):
        assert after == (before if before.isprintable() else "?")


@FUZZ
@given(text=untrusted)
def test_shown_text_is_printed_as_written_on_a_plain_console(text: str) -> None:
    out = _render(shown(text), terminal=False)
    assert out == printable(text) + "\n"


@FUZZ
@given(cells=st.lists(untrusted, min_size=1, max_size=3))
def test_shown_text_in_a_table_on_a_terminal_has_no_escape_but_the_tables_own(
    cells: list[str],
) -> None:
    table = Table("a", "b", "c")
    table.add_row(*(shown(c) for c in cells))
    out = _render(table, shown(cells[0]), terminal=True)
    assert "\x1b]" not in out  # no hyperlink (OSC 8) nor title escape
    assert "\x1b[2J" not in out and "\x07" not in out and "\x9b" not in out
    stripped = _strip_sgr(out)
    _no_control(stripped)
    for cell in cells:
        assert printable(cell).replace(" ", "") in stripped.replace(" ", "").replace("\n", "") or (
            len(printable(cell)) > 60
        )


def _strip_sgr(text: str) -> str:
    """Remove the colour/bold sequences rich writes itself (`ESC [ ... m`); anything else stays."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("\x1b[", i):
            end = i + 2
            while end < len(text) and (text[end].isdigit() or text[end] == ";"):
                end += 1
            if end < len(text) and text[end] == "m":
                i = end + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)
