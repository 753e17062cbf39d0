"""The backfill reader on JSON lines, and how it tells the two formats apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faceswap_jobs.batches.rows import MAX_LINE_BYTES, InputFileError, Row, detect_format
from tests.support.rows import SRC, TGT, req_key, rows, summary, write

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
