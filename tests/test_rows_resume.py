"""What lets a backfill restart exactly: identity keys for each row, and resume offsets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faceswap_jobs.batches.rows import MAX_LINE_BYTES, Row, read_rows
from tests.support.rows import SRC, TGT, req_key, rows, write

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
