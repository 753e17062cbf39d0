"""The backfill reader: validation, rejects with their lines, identity keys and exact resume."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path

import pytest

from faceswap_jobs.batches.rows import (
    MAX_ID_CHARS,
    MAX_LINE_BYTES,
    InputFileError,
    Reject,
    Row,
    detect_format,
    read_rows,
)
from faceswap_jobs.models import SwapRequest

SRC = "https://img.example.com/src.jpg"
TGT = "https://img.example.com/tgt.jpg"
HEADER = "id,source_image_url,target_image_url,timeout,customer,note\n"


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def rows(path: Path, **kwargs: object) -> list[Row | Reject]:
    return list(read_rows(path, **kwargs))  # type: ignore[arg-type]


def summary(items: list[Row | Reject]) -> list[tuple[int, str]]:
    return [(i.line, i.key if isinstance(i, Row) else "REJECT " + i.reason) for i in items]


def only_reject(items: list[Row | Reject]) -> Reject:
    assert len(items) == 1, items
    assert isinstance(items[0], Reject), items[0]
    return items[0]


def req_key(body: dict[str, object]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return "req:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


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
        (3, "REJECT id must not contain control characters"),
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


# --- JSONL ---------------------------------------------------------------------------------------


def test_jsonl_good_and_bad_lines(tmp_path: Path) -> None:
    lines = [
        {"id": 42, "source_image_url": SRC, "target_image_url": TGT, "timeout": "45"},
        "not json at all",
        [SRC, TGT],
        {"source_image_url": SRC, "target_image_url": TGT, "metadata": {"a": 1}, "b": "x"},
        {"source_image_url": SRC, "target_image_url": TGT, "metadata": {"a": 1}, "a": 2},
        {"source_image_url": SRC, "target_image_url": TGT, "metadata": ["a"]},
        {"source_image_url": SRC},
        {"id": True, "source_image_url": SRC, "target_image_url": TGT},
        {"source_image_url": SRC, "target_image_url": TGT, "timeout": None, "id": "  "},
    ]
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    items = rows(write(tmp_path, "in.jsonl", "\n" + text))  # a blank first line is skipped

    plain_key = req_key({"source_image_url": SRC, "target_image_url": TGT})
    assert summary(items) == [
        (2, "id:42"),
        (3, "REJECT not valid JSON: Expecting value (column 1)"),
        (4, "REJECT not a JSON object (got an array)"),
        (5, plain_key),
        (6, "REJECT key 'a' is given both at the top level and in metadata"),
        (7, "REJECT metadata must be a JSON object"),
        (8, "REJECT target_image_url: Field required"),
        (9, "REJECT id must be a string or an integer"),
        (10, plain_key),
    ]
    first, merged = items[0], items[3]
    assert isinstance(first, Row) and first.request.timeout == 45.0 and first.metadata == {}
    assert isinstance(merged, Row) and merged.metadata == {"a": 1, "b": "x"}
    assert items[2].raw == json.dumps([SRC, TGT])  # type: ignore[union-attr]


def test_jsonl_crlf_bom_and_overlong_line(tmp_path: Path) -> None:
    good = json.dumps({"source_image_url": SRC, "target_image_url": TGT})
    long = json.dumps({"source_image_url": SRC, "target_image_url": TGT, "pad": "p" * 70000})
    data = ("\ufeff" + good + "\r\n" + long + "\r\n" + good).encode()
    items = rows(write(tmp_path, "in.ndjson", data))

    assert summary(items)[1] == (2, f"REJECT record longer than {MAX_LINE_BYTES} bytes")
    assert [i.line for i in items] == [1, 2, 3]
    assert isinstance(items[0], Row) and isinstance(items[2], Row)
    assert items[0].end_offset == 3 + len(good) + 2
    assert items[2].end_offset == len(data)


# --- identity ------------------------------------------------------------------------------------


def test_identity_ignores_metadata_and_format_but_follows_the_id(tmp_path: Path) -> None:
    csv_path = write(
        tmp_path,
        "in.csv",
        f"id,source_image_url,target_image_url,timeout,who\n"
        f",{SRC},{TGT},30,ann\n,{SRC},{TGT},30.0,\nabc,{SRC},{TGT},30,\n,{SRC},{TGT},31,\n",
    )
    jsonl_path = write(
        tmp_path,
        "in.jsonl",
        json.dumps({"source_image_url": SRC, "target_image_url": TGT, "timeout": 30}) + "\n",
    )
    with_meta, without_meta, with_id, other = rows(csv_path)
    (from_jsonl,) = rows(jsonl_path)

    expected = req_key({"source_image_url": SRC, "target_image_url": TGT, "timeout": 30.0})
    assert isinstance(with_meta, Row) and with_meta.metadata == {"who": "ann"}
    assert with_meta.key == without_meta.key == from_jsonl.key == expected  # type: ignore[union-attr]
    assert with_id.key == "id:abc"  # type: ignore[union-attr]
    assert other.key.startswith("req:") and other.key != expected  # type: ignore[union-attr]


# --- resume --------------------------------------------------------------------------------------


def assert_resume_equivalent(path: Path) -> None:
    full = rows(path, max_timeout_s=100)
    assert len(full) >= 5
    for i, item in enumerate(full):
        after = rows(
            path, start_offset=item.end_offset, start_line=item.next_line, max_timeout_s=100
        )
        assert after == full[i + 1 :], f"resuming after item {i} (line {item.line})"
        counted = rows(path, start_offset=item.end_offset, max_timeout_s=100)
        assert counted == full[i + 1 :], f"resuming after item {i} without start_line"


def test_resume_from_every_item_csv(tmp_path: Path) -> None:
    data = (
        "\ufeffid,source_image_url,target_image_url,timeout,note\n"
        f'a,{SRC},{TGT},,"multi\nline, ""quoted"""\n'
        "\n"
        f"b,bad-url,{TGT},,\r\n"
        f'c,{SRC},{TGT},150,"x\r\ny\r\nz"\r\n'
        f'd,{SRC},{TGT},,"{"w" * (MAX_LINE_BYTES + 10)}"\n'
        f"e,{SRC},{TGT},,\n"
        f"f,{SRC},{TGT}\n"
        f'g,{SRC},{TGT},20,"last\nrecord"'
    ).encode()
    path = write(tmp_path, "in.csv", data)

    assert [i.line for i in rows(path)] == [2, 5, 6, 9, 10, 11, 12]
    assert_resume_equivalent(path)


def test_resume_from_every_item_jsonl(tmp_path: Path) -> None:
    good = {"source_image_url": SRC, "target_image_url": TGT}
    data = (
        json.dumps({**good, "id": 1})
        + "\n\n"
        + "{broken\r\n"
        + json.dumps({**good, "pad": "p" * (MAX_LINE_BYTES + 1)})
        + "\n"
        + json.dumps({**good, "id": "two", "metadata": {"k": "v"}})
        + "\r\n"
        + "[1]\n"
        + json.dumps(good)
        + "\n"
    )
    path = write(tmp_path, "in.jsonl", data)

    assert [i.line for i in rows(path)] == [1, 3, 4, 5, 6, 7]
    assert_resume_equivalent(path)


def test_resume_offsets_are_checked(tmp_path: Path) -> None:
    data = f"source_image_url,target_image_url\n{SRC},{TGT}\n{SRC},{TGT}\n"
    path = write(tmp_path, "in.csv", data)
    header_end = data.index("\n") + 1

    with pytest.raises(ValueError, match="not at the start of a line"):
        read_rows(path, start_offset=header_end + 3)
    with pytest.raises(ValueError, match="inside the CSV header"):
        read_rows(path, start_offset=5)
    with pytest.raises(ValueError, match="outside the file"):
        read_rows(path, start_offset=len(data) + 1)
    assert rows(path, start_offset=len(data)) == []
    assert [i.line for i in rows(path, start_offset=header_end)] == [2, 3]


# --- format detection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("a.csv", "{not really}", "csv"),
        ("a.CSV", "", "csv"),
        ("a.jsonl", "x,y", "jsonl"),
        ("a.ndjson", "", "jsonl"),
        ("a.txt", '\ufeff\n  {"a": 1}', "jsonl"),
        ("noext", "source_image_url,target_image_url\n", "csv"),
    ],
)
def test_detect_format(tmp_path: Path, name: str, content: str, expected: str) -> None:
    assert detect_format(write(tmp_path, name, content)) == expected


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.tsv", "source_image_url\ttarget_image_url\n", "tab-separated"),
        ("a.txt", "  \n", "empty file"),
        ("a.txt", '[{"a": 1}]', "one JSON object per line"),
    ],
)
def test_detect_format_refuses_what_it_cannot_read(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    with pytest.raises(InputFileError, match=message):
        detect_format(write(tmp_path, name, content))
