"""Untrusted text is data on the way out: rich markup in an API's error text neither crashes
the CLI nor becomes a link, terminal escapes never reach the terminal, and a CSV export never
hands a spreadsheet a formula."""

from __future__ import annotations

import pytest

from faceswap_jobs.batches.export import inert_cell
from faceswap_jobs.models import Attempt, JobRecord, JobState, SwapRequest
from faceswap_jobs.ops import cli
from faceswap_jobs.ops.console import console

HOSTILE = ["[/]", "[link=https://evil.example]click[/link]", "\x1b[2J\x1b]0;pwned\x07", "[bold"]


def _failed_with(message: str) -> JobRecord:
    error = {"type": "ServerError", "message": message, "status": 500, "code": message,
             "trace_id": message, "retry_after_s": None, "detail": None}  # fmt: skip
    request = SwapRequest.parse(
        {
            "source_image_url": "https://a.example/1.png",
            "target_image_url": "https://a.example/2.png",
        }
    )
    return JobRecord(
        id="job-1", state=JobState.FAILED, request=request, queue="faceswap.interactive",
        created_at=1.0, updated_at=2.0, last_error=error, failure_reason=message,
        history=[Attempt(number=1, started_at=1.0, ended_at=2.0, outcome="failed", error=error)],
    )  # fmt: skip


@pytest.mark.parametrize("message", HOSTILE)
def test_status_shows_hostile_error_text_as_text(message: str) -> None:
    with console.capture() as captured:
        cli._print_record(_failed_with(message))
    out = captured.get()
    assert "\x1b" not in out and "\x07" not in out
    if message.startswith("["):
        assert message in out


@pytest.mark.parametrize(
    ("cell", "written"),
    [("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)",
     "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("row-1", "row-1"), (3, 3), ("", "")],
)  # fmt: skip
def test_a_csv_cell_a_spreadsheet_would_run_is_quoted(cell: object, written: object) -> None:
    assert inert_cell(cell) == written
