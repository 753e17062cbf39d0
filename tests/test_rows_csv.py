"""The backfill reader on CSV: validation, rejects with their lines, encodings and limits."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from faceswap_jobs.batches.rows import (
    MAX_ID_CHARS,
    MAX_LINE_BYTES,
    InputFileError,
    Reject,
    Row,
    read_rows,
)
from faceswap_jobs.models import SwapRequest
from tests.support.rows import SRC, TGT, req_key, rows, summary, write

HEADER = "id,source_image_url,target_image_url,timeout,customer,note\n"


# --- CSV -----------------------------------------------------------------------------------------


def test_csv_good_rows_keep_metadata_columns_and_drop_empty_cells(tmp_path: Path) -> None:
    line2 = f"a1, {SRC} ,{TGT},30,acme,first\n"
    line3 = f",{SRC},{TGT},,globex,\n"
    path = write(tmp_path, "in.csv", HEADER + line2 + line3)

    first, second = rows(path)

    assert isinstance(first, Row) and isinstance(second, Row)
    assert (first.line, first.next_line, first.key) == (2, 3, "id:a1")
    assert first.request == SwapRequest(source_image_url=SRC, target_image_url=TGT, timeout=30)
    assert first.metadata == {"customer": "acme", "note": "first"}
    assert first.end_offset == len(HEADER) + len(line2)
    assert (second.line, second.next_line) == (3, 4)
    assert second.key == req_key({"source_image_url": SRC, "target_image_url": TGT})
    assert second.request.timeout is None
    assert second.metadata == {"customer": "globex"}
    assert second.end_offset == path.stat().st_size


def test_csv_rejects_carry_their_line_even_after_a_multiline_record(tmp_path: Path) -> None:
    data = (
        HEADER
        + f'm1,{SRC},{TGT},,acme,"spans\nthree, with ""quotes""\nlines"\n'  # lines 2-4
        + f"b1,ftp://img.example.com/a.jpg,{TGT},,,\n"  # 5
        + f"b2,{SRC},{TGT},soon,,\n"  # 6
        + f"b3,{SRC},{TGT},0.5,,\n"  # 7
        + f"b4,{SRC},{TGT},120,,\n"  # 8
        + f"{'x' * (MAX_ID_CHARS + 1)},{SRC},{TGT},,,\n"  # 9
        + f"b6,{SRC},{TGT},,,,extra\n"  # 10
        + f"b7,{SRC},{TGT}\n"  # 11
        + f"b8,{SRC},{TGT},89.5,,\n"  # 12
    )
    items = rows(write(tmp_path, "in.csv", data), max_timeout_s=90)

    assert summary(items) == [
        (2, "id:m1"),
        (5, "REJECT source_image_url: must be an http:// or https:// URL with a host"),
        (6, "REJECT timeout: must be a number of seconds, got 'soon'"),
        (7, "REJECT timeout: Input should be greater than or equal to 1"),
        (8, "REJECT timeout (120 s) must be below the workers' read timeout (90 s)"),
        (9, f"REJECT id is longer than {MAX_ID_CHARS} characters"),
        (10, "REJECT 7 cells, header has 6"),
        (11, "REJECT 3 cells, header has 6"),
        (12, "id:b8"),
    ]
    multiline = items[0]
    assert isinstance(multiline, Row)
    assert multiline.next_line == 5
    assert multiline.metadata == {"customer": "acme", "note": 'spans\nthree, with "quotes"\nlines'}
    assert isinstance(items[1], Reject)
    assert items[1].raw == f"b1,ftp://img.example.com/a.jpg,{TGT},,,"


def test_timeout_equal_to_the_read_timeout_is_rejected_and_just_below_passes(
    tmp_path: Path,
) -> None:
    data = f"source_image_url,target_image_url,timeout\n{SRC},{TGT},90\n{SRC},{TGT},89.9\n"
    items = rows(write(tmp_path, "in.csv", data), max_timeout_s=90)

    assert summary(items)[0] == (
        2,
        "REJECT timeout (90 s) must be below the workers' read timeout (90 s)",
    )
    assert isinstance(items[1], Row) and items[1].request.timeout == 89.9
    assert all(isinstance(i, Row) for i in rows(write(tmp_path, "b.csv", data)))


def test_id_limits(tmp_path: Path) -> None:
    longest = "i" * MAX_ID_CHARS
    data = f"id,source_image_url,target_image_url\n{longest},{SRC},{TGT}\nbad\x01id,{SRC},{TGT}\n"
    items = rows(write(tmp_path, "in.csv", data))

    assert summary(items) == [
        (2, f"id:{longest}"),
        (
            3,
            "REJECT id must not contain control, invisible or unpaired surrogate characters "
            "(U+0001 at character 4)",
        ),
    ]


def test_invalid_utf8_is_a_reject_and_reading_goes_on(tmp_path: Path) -> None:
    data = (
        b"source_image_url,target_image_url,who\n"
        + f"{SRC},{TGT},caf".encode()
        + b"\xe9\n"
        + f"{SRC},{TGT},ok\n".encode()
    )
    items = rows(write(tmp_path, "in.csv", data))

    reject = items[0]
    assert isinstance(reject, Reject)
    assert reject.line == 2
    assert reject.reason.startswith("not valid UTF-8 (byte 0xe9")
    assert reject.raw.endswith("caf\ufffd")
    assert isinstance(items[1], Row) and items[1].metadata == {"who": "ok"}
    assert items[1].line == 3


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_record_length_limit_is_exact(tmp_path: Path, ending: str) -> None:
    prefix = f"{SRC},{TGT},"
    at_limit = prefix + "m" * (MAX_LINE_BYTES - len(prefix))
    over = at_limit + "m"
    header = "source_image_url,target_image_url,blob" + ending
    data = header + at_limit + ending + over + ending + f"{SRC},{TGT},small" + ending
    items = rows(write(tmp_path, "in.csv", data))

    assert summary(items) == [
        (2, "REJECT metadata is larger than 4096 bytes as JSON"),  # read whole: not too long
        (3, f"REJECT record longer than {MAX_LINE_BYTES} bytes"),
        (4, items[2].key if isinstance(items[2], Row) else "not a row"),
    ]
    assert isinstance(items[2], Row) and items[2].metadata == {"blob": "small"}
    overlong = items[1]
    assert isinstance(overlong, Reject)
    assert overlong.raw == over[:300]
    assert overlong.end_offset == len(header) + 2 * len(ending) + len(at_limit) + len(over)


def test_overlong_record_is_skipped_without_buffering_it(tmp_path: Path) -> None:
    huge = "z" * (4 * 1024 * 1024)
    data = (
        "source_image_url,target_image_url,blob\n"
        + f'{SRC},{TGT},"{huge}\n{huge}"\n'  # one quoted record of two 4 MiB lines
        + f"{SRC},{TGT},after\n"
    )
    path = write(tmp_path, "in.csv", data)
    del data, huge

    tracemalloc.start()
    try:
        items = rows(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert summary(items)[0] == (2, f"REJECT record longer than {MAX_LINE_BYTES} bytes")
    assert items[0].next_line == 4
    assert isinstance(items[1], Row) and (items[1].line, items[1].metadata) == (
        4,
        {"blob": "after"},
    )
    assert peak < 1024 * 1024


def test_blank_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    data = f"source_image_url,target_image_url\n\n{SRC},{TGT}\n   \n\r\n{SRC},{TGT}x\n\n"
    items = rows(write(tmp_path, "in.csv", data))

    assert [i.line for i in items] == [3, 6]
    assert all(isinstance(i, Row) for i in items)


def test_bom_and_crlf(tmp_path: Path) -> None:
    data = (
        "\ufeffid,source_image_url,target_image_url,note\r\n"
        f'a,{SRC},{TGT},"two\r\nlines"\r\n'
        f"b,{SRC},{TGT},plain\r\n"
    ).encode()
    path = write(tmp_path, "in.csv", data)
    first, second = rows(path)

    assert isinstance(first, Row) and isinstance(second, Row)
    assert (first.key, first.line, first.next_line) == ("id:a", 2, 4)
    assert first.metadata == {"note": "two\r\nlines"}
    assert (second.key, second.line, second.metadata) == ("id:b", 4, {"note": "plain"})
    assert second.request.target_image_url == TGT
    assert second.end_offset == len(data)


def test_a_stray_quote_inside_a_field_does_not_swallow_the_next_lines(tmp_path: Path) -> None:
    data = f'source_image_url,target_image_url,size\n{SRC},{TGT},5" tall\n{SRC},{TGT},6\n'
    items = rows(write(tmp_path, "in.csv", data))

    assert [(i.line, i.metadata) for i in items if isinstance(i, Row)] == [
        (2, {"size": '5" tall'}),
        (3, {"size": "6"}),
    ]


def test_unterminated_quote_at_end_of_file_is_a_reject(tmp_path: Path) -> None:
    data = f'source_image_url,target_image_url,note\n{SRC},{TGT},ok\n{SRC},{TGT},"open\nstill\n'
    items = rows(write(tmp_path, "in.csv", data))

    assert summary(items)[1:] == [(3, "REJECT unterminated quoted field at the end of the file")]
    assert items[1].end_offset == len(data)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("id,target_image_url\n", "missing required column source_image_url"),
        ("id,foo\n", "missing required columns source_image_url, target_image_url"),
        ("source_image_url,target_image_url, note ,note\n", "duplicate column 'note'"),
        ("source_image_url,,target_image_url\n", "header column 2 has an empty name"),
        (f"{SRC},{TGT}\n", "no header"),
        ("", "empty file"),
        ("\n  \n", "empty file"),
    ],
)
def test_header_problems_make_the_whole_file_unusable(
    tmp_path: Path, header: str, message: str
) -> None:
    path = write(tmp_path, "in.csv", header + f"{SRC},{TGT}\n" if header.strip() else header)

    with pytest.raises(InputFileError, match=message):
        read_rows(path)  # raised on the call, before any iteration


def test_header_invalid_utf8_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not valid UTF-8"):
        read_rows(write(tmp_path, "in.csv", b"source_image_url,target\xff\n"))
    with pytest.raises(InputFileError, match="cannot read"):
        read_rows(tmp_path / "missing.csv")
