"""Stream a backfill's CSV or JSONL file as validated rows, in constant memory, resumable by offset.

A backfill file holds millions of swap requests, so it is never loaded whole: it is read in binary
mode through a bounded buffer, one record at a time, and no record is held beyond
`MAX_LINE_BYTES`. A bad record never stops the run: it becomes a `Reject` with its line number and
one readable reason, and is never enqueued, while the good ones proceed as `Row`s.

Every item carries the byte offset just after its record and the line number of the next record,
so a crashed backfill restarts with `read_rows(path, start_offset=x.end_offset,
start_line=x.next_line)` after the last enqueued item instead of re-parsing everything before it.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from faceswap_jobs.errors import InvalidSwapRequest
from faceswap_jobs.models import SwapRequest
from faceswap_jobs.validation import (
    MAX_ID_CHARS,
    check_identifier,
    check_metadata,
    identity_key,
    swap_request,
)

__all__ = [
    "MAX_ID_CHARS",
    "MAX_LINE_BYTES",
    "InputFileError",
    "Reject",
    "Row",
    "detect_format",
    "read_rows",
]

MAX_LINE_BYTES = 64 * 1024
"""A record (a physical line, or a CSV record spanning lines) longer than this is rejected: a real
swap request is a few hundred bytes, and the bound keeps memory flat whatever the file holds."""

REQUIRED_COLUMNS = ("source_image_url", "target_image_url")
OPTIONAL_COLUMNS = ("id", "timeout")

_BOM = b"\xef\xbb\xbf"
_LIMIT = MAX_LINE_BYTES + 2
"""Bytes read for a record before giving up on it: its content plus a `\\r\\n` ending."""
_CHUNK = 64 * 1024
"""Bounded reads used to skip an overlong record, count lines and sniff the format."""
_RAW_CHARS = 300
_INVALID_PREFIX = "invalid swap request: "
_REPEATED_FIELD = re.compile(r"(^|; )([\w.]+): \2 ")
"""`source_image_url: source_image_url must be...` (pydantic's location plus the validator's own
message) reads better as `source_image_url: must be...` in a report of millions of lines."""
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number"}
_UNSUPPORTED_SUFFIXES = {
    ".tsv": "tab-separated files are not supported: save it as comma-separated CSV",
    ".json": "a .json file is one document: write one JSON object per line as .jsonl",
    ".xlsx": "spreadsheets are not supported: export the sheet as CSV",
    ".xls": "spreadsheets are not supported: export the sheet as CSV",
    ".gz": "compressed files are not supported: decompress it first",
    ".zip": "compressed files are not supported: decompress it first",
    ".parquet": "parquet is not supported: export it as CSV or JSONL",
}

# Where a CSV record's quoting stands after some of its bytes (the csv module's own states).
_START, _UNQUOTED, _QUOTED, _QUOTE_IN_QUOTED = range(4)
# What `_records` found.
_OK, _OVERLONG, _UNTERMINATED = range(3)


class InputFileError(ValueError):
    """The whole file is unusable, so the backfill must stop before enqueueing anything."""


@dataclass(frozen=True, slots=True)
class Row:
    """A valid record, ready to enqueue; `key` lets a re-run recognise work already done."""

    line: int
    """Line where the record starts (1-based; a CSV header is line 1)."""
    end_offset: int
    """Byte offset just after the record: where a resume starts."""
    next_line: int
    """Line where the next record starts: the `start_line` to resume with."""
    key: str
    """`id:<id>` when the row names one, else `req:` and a hash of the request body."""
    request: SwapRequest
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reject:
    """A record that must not be enqueued; it still advances the resume point like a `Row`."""

    line: int
    end_offset: int
    next_line: int
    reason: str
    """One line, for the report: the operator fixes the file from it."""
    raw: str
    """The start of the record (invalid bytes replaced), to find it without opening the file."""


def detect_format(path: Path) -> Literal["csv", "jsonl"]:
    """Trust a known suffix; otherwise sniff, so an export without a suffix still works."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in _UNSUPPORTED_SUFFIXES:
        raise InputFileError(f"{path}: {_UNSUPPORTED_SUFFIXES[suffix]}")
    with _open(path) as f:
        first = _first_visible_byte(f)
    if first is None:
        raise InputFileError(f"{path}: empty file")
    if first == b"{":
        return "jsonl"
    if first == b"[":
        raise InputFileError(f"{path}: {_UNSUPPORTED_SUFFIXES['.json']}")
    return "csv"


def read_rows(
    path: Path,
    *,
    start_offset: int = 0,
    start_line: int | None = None,
    max_timeout_s: float | None = None,
) -> Iterator[Row | Reject]:
    """Check the file and the resume point now, so a bad file fails before the backfill starts.

    `start_offset` and `start_line` come from an item's `end_offset` and `next_line`; without
    `start_line` the newlines before `start_offset` are counted (in chunks). `max_timeout_s` is
    the workers' read timeout: a request may not ask the API to take longer than workers wait.
    """
    path = Path(path)
    fmt = detect_format(path)
    header: _CsvHeader | None = None
    with _open(path) as f:
        size = f.seek(0, 2)
        f.seek(0)
        data_offset = len(_BOM) if f.read(len(_BOM)) == _BOM else 0
        data_line = 1
        if fmt == "csv":
            header, data_offset, data_line = _read_header(f, path, data_offset)
        else:
            f.seek(data_offset)
            if _first_visible_byte(f) is None:
                raise InputFileError(f"{path}: empty file")
        if start_offset < 0 or start_offset > size:
            raise ValueError(f"start_offset {start_offset} is outside the file (0-{size} bytes)")
        if 0 < start_offset < data_offset:
            raise ValueError(f"start_offset {start_offset} falls inside the CSV header")
        if start_offset > data_offset:
            if start_offset < size:
                f.seek(start_offset - 1)
                if f.read(1) != b"\n":
                    raise ValueError(f"start_offset {start_offset} is not at the start of a line")
            data_offset = start_offset
            data_line = start_line if start_line is not None else _count_lines(f, start_offset)
    return _iterate(path, header, data_offset, data_line, max_timeout_s)


# --- reading records ---------------------------------------------------------------------------


def _open(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _first_visible_byte(f: IO[bytes]) -> bytes | None:
    """The first non-whitespace byte after a BOM, read in chunks; None when there is none."""
    head = f.read(len(_BOM))
    if head != _BOM:
        f.seek(-len(head), 1)
    while chunk := f.read(_CHUNK):
        stripped = chunk.lstrip()
        if stripped:
            return stripped[:1]
    return None


def _count_lines(f: IO[bytes], offset: int) -> int:
    """The line number at `offset`, for a resume whose caller did not keep it."""
    f.seek(0)
    newlines, remaining = 0, offset
    while remaining > 0:
        chunk = f.read(min(_CHUNK, remaining))
        if not chunk:
            break
        newlines += chunk.count(b"\n")
        remaining -= len(chunk)
    return newlines + 1


def _scan(data: bytes, state: int) -> int:
    """Follow the csv module's quoting rules over `data` to know whether a record goes on.

    Only a quote that opens a field starts a quoted field (a quote inside an unquoted field is
    plain text, as the csv module reads it), so a stray quote does not swallow the next lines.
    """
    i, n = 0, len(data)
    while i < n:
        if state == _QUOTED:
            j = data.find(b'"', i)
            if j < 0:
                return _QUOTED
            state, i = _QUOTE_IN_QUOTED, j + 1
        elif state == _QUOTE_IN_QUOTED:
            if data[i] == 0x22:  # '""' is an escaped quote
                state, i = _QUOTED, i + 1
            else:
                state = _UNQUOTED
        elif state == _START:
            if data[i] == 0x22:
                state, i = _QUOTED, i + 1
            else:
                state = _UNQUOTED
        else:
            j = data.find(b",", i)
            if j < 0:
                return _UNQUOTED
            state, i = _START, j + 1
    return state


def _records(
    f: IO[bytes], pos: int, line: int, quoting: bool
) -> Iterator[tuple[int, int, int, int, list[bytes]]]:
    """Yield `(line, end_offset, next_line, status, pieces)` per record, skipping blank lines.

    Each `readline` is bounded, so an overlong record is rejected from its first `_LIMIT` bytes
    and the rest is skipped chunk by chunk, never buffered. With `quoting` (CSV) a record goes on
    over newlines inside a quoted field.
    """
    readline = f.readline
    while True:
        first = readline(_LIMIT)
        if not first:
            return
        start_line = line
        size = len(first)
        ended = first[-1] == 0x0A
        eof = not ended and size < _LIMIT
        pieces = [first]
        state = _START
        if quoting and b'"' in first:
            state = _scan(first, _START)
            while state == _QUOTED and ended and size < _LIMIT:
                piece = readline(_LIMIT - size)
                if not piece:
                    eof = True
                    break
                line += 1
                pieces.append(piece)
                size += len(piece)
                ended = piece[-1] == 0x0A
                eof = not ended and size < _LIMIT
                state = _scan(piece, _QUOTED)
        if ended:
            line += 1
        if (ended or eof) and state != _QUOTED:
            if len(pieces) == 1 and not first.strip():
                pos += size
                continue
            ending = (2 if pieces[-1].endswith(b"\r\n") else 1) if ended else 0
            status = _OK if size - ending <= MAX_LINE_BYTES else _OVERLONG
        elif eof:
            status = _UNTERMINATED
        else:
            status = _OVERLONG
            if quoting and state == _START and b'"' not in first:
                state = _scan(first, _START)
            while chunk := readline(_CHUNK):
                size += len(chunk)
                if quoting:
                    state = _scan(chunk, state)
                if chunk[-1] == 0x0A:
                    line += 1
                    if state != _QUOTED:
                        break
        pos += size
        yield start_line, pos, line, status, pieces


# --- CSV ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CsvHeader:
    width: int
    source: int
    target: int
    id: int | None
    timeout: int | None
    metadata: tuple[tuple[str, int], ...]


def _read_header(f: IO[bytes], path: Path, offset: int) -> tuple[_CsvHeader, int, int]:
    """Parse the header record; returns it with the offset and line where data starts."""
    f.seek(offset)
    for _line, end, next_line, status, pieces in _records(f, offset, 1, quoting=True):
        if status != _OK:
            problem = "unterminated quote" if status == _UNTERMINATED else "an overlong line"
            raise InputFileError(f"{path}: the CSV header has {problem}")
        try:
            texts = [p.decode() for p in pieces]
            names = [name.strip() for name in next(csv.reader(texts))]
        except UnicodeDecodeError:
            raise InputFileError(f"{path}: the CSV header is not valid UTF-8") from None
        except csv.Error as exc:
            raise InputFileError(f"{path}: the CSV header is malformed: {exc}") from None
        return _header_from_names(path, names), end, next_line
    raise InputFileError(f"{path}: empty file: a CSV file needs a header line naming its columns")


def _header_from_names(path: Path, names: list[str]) -> _CsvHeader:
    if any(name.startswith(("http://", "https://")) for name in names):
        raise InputFileError(
            f"{path}: no header: the first line must name the columns "
            f"({', '.join(REQUIRED_COLUMNS)}, optional {', '.join(OPTIONAL_COLUMNS)}, metadata)"
        )
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name:
            raise InputFileError(f"{path}: header column {i + 1} has an empty name")
        if name in index:
            raise InputFileError(f"{path}: duplicate column {name!r} in the header")
        index[name] = i
    missing = [name for name in REQUIRED_COLUMNS if name not in index]
    if missing:
        raise InputFileError(
            f"{path}: missing required column{'s' if len(missing) > 1 else ''} "
            + ", ".join(missing)
        )
    known = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
    return _CsvHeader(
        width=len(names),
        source=index["source_image_url"],
        target=index["target_image_url"],
        id=index.get("id"),
        timeout=index.get("timeout"),
        metadata=tuple((name, i) for name, i in index.items() if name not in known),
    )


def _parse_csv(
    header: _CsvHeader, pieces: list[bytes], max_timeout_s: float | None
) -> tuple[str, SwapRequest, dict[str, Any]]:
    """A record's key, request and metadata; raises `_Bad` with the reason to reject it."""
    try:
        texts = [p.decode() for p in pieces]
    except UnicodeDecodeError:
        raise _Bad(_utf8_reason(pieces)) from None
    try:
        reader = csv.reader(texts)
        cells = next(reader)
    except csv.Error as exc:
        raise _Bad(f"malformed CSV: {exc}") from None
    if reader.line_num != len(texts):
        raise _Bad("malformed CSV quoting")
    if len(cells) != header.width:
        raise _Bad(f"{len(cells)} cells, header has {header.width}")
    metadata = {name: value for name, i in header.metadata if (value := cells[i].strip())}
    return _validate(
        {
            "source_image_url": cells[header.source].strip(),
            "target_image_url": cells[header.target].strip(),
        },
        cells[header.id] if header.id is not None else None,
        cells[header.timeout] if header.timeout is not None else None,
        metadata,
        max_timeout_s,
    )


# --- JSONL -------------------------------------------------------------------------------------


def _parse_jsonl(
    pieces: list[bytes], max_timeout_s: float | None
) -> tuple[str, SwapRequest, dict[str, Any]]:
    """A line's key, request and metadata; raises `_Bad` with the reason to reject it."""
    try:
        text = pieces[0].decode()
    except UnicodeDecodeError:
        raise _Bad(_utf8_reason(pieces)) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Bad(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    except (ValueError, RecursionError):
        raise _Bad("not valid JSON") from None
    if not isinstance(obj, dict):
        kind = "null" if obj is None else _JSON_TYPES.get(type(obj), "a boolean")
        raise _Bad(f"not a JSON object (got {kind})")
    urls = {k: obj.pop(k) for k in REQUIRED_COLUMNS if k in obj}
    id_value = obj.pop("id", None)
    timeout = obj.pop("timeout", None)
    metadata = obj.pop("metadata", None)
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        raise _Bad("metadata must be a JSON object")
    if obj:
        clash = sorted(obj.keys() & metadata.keys())
        if clash:
            raise _Bad(f"key {clash[0]!r} is given both at the top level and in metadata")
        metadata = {**metadata, **obj}
    return _validate(urls, id_value, timeout, metadata, max_timeout_s)


# --- shared validation -------------------------------------------------------------------------


class _Bad(Exception):
    """A record's reject reason, raised from deep in the checks (free when nothing is raised)."""


def _validate(
    urls: dict[str, Any],
    id_value: Any,
    timeout_value: Any,
    metadata: dict[str, Any],
    max_timeout_s: float | None,
) -> tuple[str, SwapRequest, dict[str, Any]]:
    """The rules of `validation`, so a row means the same whichever way it entered."""
    try:
        row_id = check_identifier(id_value, "id")
        request = swap_request({**urls, "timeout": timeout_value}, read_timeout_s=max_timeout_s)
        if metadata:
            check_metadata(metadata)
    except InvalidSwapRequest as exc:
        reason = exc.message.removeprefix(_INVALID_PREFIX)
        raise _Bad(_REPEATED_FIELD.sub(r"\1\2: ", reason)) from None
    return identity_key(row_id, request.body()), request, metadata


def _utf8_reason(pieces: list[bytes]) -> str:
    record = b"".join(pieces)
    try:
        record.decode()
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 (byte 0x{record[exc.start]:02x} at byte {exc.start + 1})"
    return "not valid UTF-8"


def _raw(pieces: list[bytes]) -> str:
    head = b"".join(pieces)[: _RAW_CHARS * 4]
    return head.decode("utf-8", "replace").rstrip("\r\n")[:_RAW_CHARS]


def _one_line(reason: str) -> str:
    return " ".join(reason.splitlines()) if "\n" in reason or "\r" in reason else reason


def _iterate(
    path: Path,
    header: _CsvHeader | None,
    offset: int,
    line: int,
    max_timeout_s: float | None,
) -> Iterator[Row | Reject]:
    with _open(path) as f:
        f.seek(offset)
        for start_line, end, next_line, status, pieces in _records(
            f, offset, line, quoting=header is not None
        ):
            if status == _OK:
                try:
                    if header is not None:
                        key, request, metadata = _parse_csv(header, pieces, max_timeout_s)
                    else:
                        key, request, metadata = _parse_jsonl(pieces, max_timeout_s)
                except _Bad as exc:
                    reason = _one_line(str(exc))
                else:
                    yield Row(start_line, end, next_line, key, request, metadata)
                    continue
            elif status == _OVERLONG:
                reason = f"record longer than {MAX_LINE_BYTES} bytes"
            else:
                reason = "unterminated quoted field at the end of the file"
            yield Reject(start_line, end, next_line, reason, _raw(pieces))
