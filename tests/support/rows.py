"""Backfill input files for the reader's tests: writing them, reading them, and expected keys."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from faceswap_jobs.batches.rows import Reject, Row, read_rows

SRC = "https://img.example.com/src.jpg"
TGT = "https://img.example.com/tgt.jpg"


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
