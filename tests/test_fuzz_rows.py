"""Property-based: every record of a CSV or JSONL file becomes a valid `Row` or a `Reject` with
a one-line reason, whatever bytes it holds; nothing is raised, and every `Row` can be written to
Redis as UTF-8 JSON and read back as the same request.

Generated records mix valid rows with hostile bytes, invalid UTF-8, lone surrogates written as
JSON escapes (`"\\ud800"`), deep nesting, huge cells, stray quotes and line breaks.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import event, given
from hypothesis import strategies as st

from faceswap_jobs.batches.rows import MAX_LINE_BYTES, Reject, Row, read_rows
from faceswap_jobs.models import SwapRequest
from faceswap_jobs.validation import MAX_METADATA_BYTES, check_identifier, check_metadata
from tests.support.hostile import fuzz

FUZZ = fuzz(150)
SRC = "https://img.example.com/src.jpg"
TGT = "https://img.example.com/tgt.jpg"
ESCAPES = ["\\ud800", "\\udfff", "\\u0000", "\\u001b", "\\u007f", "\\u009b", "\\u202e",
           "\\u200b", "\\ufeff", "\\u3164", "\\ud83d\\ude00", '\\"', "\\\\"]  # fmt: skip
HOSTILE_BYTES = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\x1b[2J", b"\r", b'"', b",",
                 b"\xef\xbb\xbf", b"\xe2\x80\xae", b"\x7f", b"\xc2\x9b", b"[/]"]  # fmt: skip


def nested(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


escape_text = st.lists(
    st.one_of(st.sampled_from(ESCAPES), st.text(max_size=5).map(lambda t: json.dumps(t)[1:-1])),
    max_size=6,
).map("".join)
json_field = st.one_of(
    escape_text.map(lambda t: f'"{t}"'),
    st.sampled_from(['"' + SRC + '"', '"' + TGT + '"', "true", "null", "1e999", "-0", "[]", "{}",
                     '"https://u:p@img.example.com/a"', "9" * 5000]),
    st.integers(1, 400).map(nested),
    st.integers(0, 20).map(lambda n: '"' + "x" * (n * 1000) + '"'),
)  # fmt: skip


@st.composite
def jsonl_line(draw: st.DrawFn) -> bytes:
    fields = {"source_image_url": '"' + SRC + '"', "target_image_url": '"' + TGT + '"'}
    for name in draw(st.lists(st.sampled_from(["source_image_url", "target_image_url", "id",
                                               "timeout", "metadata", "extra", "\\ud800"]),
                              max_size=4)):  # fmt: skip
        fields[name] = draw(json_field)
    line = "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"
    raw = line.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.sampled_from(HOSTILE_BYTES)) + raw[cut:]
    return raw


csv_cell = st.one_of(
    st.sampled_from([SRC, TGT, "", '"', '""', "=1+1", "\ufeff", "\u202e", "\x7f"]),
    st.text(max_size=20),
    st.integers(0, 70).map(lambda n: "y" * (n * 1024)),
)


@st.composite
def csv_line(draw: st.DrawFn) -> bytes:
    cells = [SRC, TGT, "", "", ""]
    for i in draw(st.lists(st.integers(0, 4), max_size=3)):
        cells[i] = draw(csv_cell)
    if draw(st.booleans()):
        cells = cells[: draw(st.integers(0, 5))]
    quoted = [f'"{c}"' if draw(st.booleans()) else c for c in cells]
    raw = ",".join(quoted).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.sampled_from([*HOSTILE_BYTES, b"\n"])) + raw[cut:]
    return raw


def _check_items(items: list[Row | Reject]) -> None:
    previous_end = -1
    for item in items:
        assert item.end_offset > previous_end
        previous_end = item.end_offset
        if isinstance(item, Reject):
            event("reject")
            assert item.reason and "\n" not in item.reason and "\r" not in item.reason
            item.reason.encode()
            item.raw.encode()
            continue
        event("row")
        body = item.request.body()
        text = json.dumps([body, item.metadata], ensure_ascii=False, allow_nan=False)
        again_body, again_metadata = json.loads(text.encode().decode())
        assert SwapRequest.parse(again_body) == item.request
        assert again_metadata == check_metadata(item.metadata)
        assert len(json.dumps(item.metadata, ensure_ascii=False).encode()) <= MAX_METADATA_BYTES
        if item.key.startswith("id:"):
            assert check_identifier(item.key[3:], "id") == item.key[3:]


def _read(name: str, data: bytes) -> list[Row | Reject]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        return list(read_rows(path, max_timeout_s=120.0))


@FUZZ
@given(lines=st.lists(jsonl_line(), min_size=1, max_size=8))
def test_every_jsonl_line_is_a_row_or_a_reject(lines: list[bytes]) -> None:
    items = _read("in.jsonl", b"\n".join(lines) + b"\n")
    _check_items(items)
    assert len(items) <= sum(line.count(b"\n") + 1 for line in lines)


@FUZZ
@given(lines=st.lists(csv_line(), min_size=1, max_size=8))
def test_every_csv_record_is_a_row_or_a_reject(lines: list[bytes]) -> None:
    header = b"source_image_url,target_image_url,id,timeout,note\n"
    _check_items(_read("in.csv", header + b"\n".join(lines) + b"\n"))


@FUZZ
@given(data=st.binary(max_size=2000))
def test_any_bytes_after_a_header_never_raise(data: bytes) -> None:
    _check_items(_read("in.csv", b"source_image_url,target_image_url\n" + data))
    _check_items(_read("in.jsonl", b"{}\n" + data))


def test_a_record_over_the_line_cap_is_one_reject() -> None:
    line = ('{"source_image_url":"' + SRC + '","pad":"' + "z" * MAX_LINE_BYTES + '"}').encode()
    items = _read("in.jsonl", line + b"\n" + line[:200] + b"\n")
    assert [type(i) for i in items] == [Reject, Reject]
    assert "longer than" in items[0].reason
