"""`batch report`: one self-contained HTML page of source / target / result thumbnails.

People check a batch's quality by looking at it. The page embeds its pictures as small JPEG data
URIs, so opening it sends no request anywhere and it can be mailed or archived as one file. Each
URL is fetched once, `concurrency` at a time, through the guarded fetch (public hosts only unless
`hosts` allows more; `thumbnails` holds the caps), and decoded on `DECODE_THREADS` threads only: a
decoded picture can be 40 MP, and the C allocator keeps what each decoding thread used, so
decoding on every fetching thread multiplied the peak memory by their number. A picture that
cannot be fetched becomes its reason, never a missing page. Every text comes from input files or
remote servers, so every text is escaped.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from PIL import Image

from faceswap_jobs.batches.addresses import PUBLIC_ONLY, HostPolicy
from faceswap_jobs.batches.thumbnails import (
    MAX_IMAGE_BYTES,
    ThumbnailError,
    fetch_image,
    thumbnail_from_bytes,
)

DECODE_THREADS = 2
"""Threads that decode pictures, whatever the number fetching them."""
JPEG_QUALITY = 80
"""Good enough to judge a face at thumbnail size, ~5-10 KB per picture."""

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse}
th,td{border:1px solid #ddd;padding:6px;vertical-align:top;text-align:left}
th{background:#f6f6f6}
td.pic{width:var(--px);height:var(--px);text-align:center;vertical-align:middle}
td.detail{max-width:28em;white-space:pre-wrap;word-break:break-word}
small{color:#777;word-break:break-all}
img{display:block;margin:auto}
.badge{padding:2px 8px;border-radius:10px;color:#fff;white-space:nowrap;background:#888}
.ok{background:#2a7d4f}.bad{background:#c0392b}.pending{background:#b07d12}.muted{background:#888}
.missing{color:#999;font-size:12px;word-break:break-word}
"""

BADGE_TONES = {"succeeded": "ok", "failed": "bad", "rejected": "bad", "cancelled": "muted"}
"""Badge colour per status; any other status (queued, running, ...) is still pending."""


@dataclass(frozen=True)
class SheetRow:
    """One line of the sheet: whatever a batch row knows about its swap."""

    label: str
    job_id: str | None
    status: str
    source_url: str | None
    target_url: str | None
    result_url: str | None
    detail: str = ""


def write_contact_sheet(
    rows: Sequence[SheetRow],
    out: Path,
    *,
    title: str,
    thumb_px: int = 160,
    concurrency: int = 8,
    timeout_s: float = 10.0,
    hosts: HostPolicy = PUBLIC_ONLY,
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the sheet to `out` and return it; `on_progress(done, total)` counts fetched URLs.

    Memory stays bounded whatever the rows hold: at most `concurrency` bodies of
    `MAX_IMAGE_BYTES` in flight and `DECODE_THREADS` pictures of `MAX_PIXELS` decoded at once.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    urls = list(dict.fromkeys(url for row in rows for url in _urls(row) if url))
    cells = _fetch_cells(urls, thumb_px, concurrency, timeout_s, hosts, on_progress)
    body = "".join(_row_html(row, cells) for row in rows)
    out.write_text(_page(title, _summary(rows), body, thumb_px), encoding="utf-8")
    return out


def _urls(row: SheetRow) -> tuple[str | None, str | None, str | None]:
    return row.source_url, row.target_url, row.result_url


def _fetch_cells(
    urls: list[str],
    thumb_px: int,
    concurrency: int,
    timeout_s: float,
    hosts: HostPolicy,
    on_progress: Callable[[int, int], None] | None,
) -> dict[str, str]:
    """The cell for each distinct URL; progress is reported on the caller's thread."""
    report = on_progress or (lambda done, total: None)
    report(0, len(urls))
    cells: dict[str, str] = {}
    with (
        ThreadPoolExecutor(max_workers=concurrency) as pool,
        ThreadPoolExecutor(max_workers=DECODE_THREADS) as decoders,
    ):
        futures = {
            pool.submit(_picture_cell, url, thumb_px, timeout_s, hosts, decoders): url
            for url in urls
        }
        for done, future in enumerate(as_completed(futures), start=1):
            cells[futures[future]] = future.result()
            report(done, len(urls))
    return cells


def _picture_cell(
    url: str, thumb_px: int, timeout_s: float, hosts: HostPolicy, decoders: Executor
) -> str:
    """Runs on a fetching thread, which hands the body to a decoding thread and waits."""
    try:
        body = fetch_image(url, timeout_s, MAX_IMAGE_BYTES, hosts)
        image = decoders.submit(thumbnail_from_bytes, body, thumb_px).result()
        data_uri = _jpeg_data_uri(image)
    except ThumbnailError as exc:
        return _missing(exc.message, url)
    except Exception as exc:  # one odd picture must not cost the other rows their sheet
        return _missing(f"failed ({type(exc).__name__})", url)
    link = escape(url)
    return (
        f'<a href="{link}" target="_blank" rel="noreferrer">'
        f'<img alt="" title="{link}" src="{data_uri}"></a>'
    )


def _jpeg_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _missing(reason: str, url: str | None = None) -> str:
    tip = f' title="{escape(url)}"' if url else ""
    return f'<div class="missing"{tip}>{escape(reason)}</div>'


def _row_html(row: SheetRow, cells: dict[str, str]) -> str:
    job = f"<br><small>{escape(row.job_id)}</small>" if row.job_id else ""
    tone = BADGE_TONES.get(row.status, "pending")
    pictures = "".join(
        f'<td class="pic">{cells[url] if url else _missing("no image")}</td>' for url in _urls(row)
    )
    return (
        f"<tr><td>{escape(row.label)}{job}</td>"
        f'<td><span class="badge {tone}">{escape(row.status)}</span></td>'
        f'{pictures}<td class="detail">{escape(row.detail)}</td></tr>\n'
    )


def _summary(rows: Iterable[SheetRow]) -> str:
    counts = Counter(row.status for row in rows)
    parts = ", ".join(f"{n} {escape(status)}" for status, n in counts.most_common())
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{counts.total()} rows: {parts or 'none'}. Generated {generated}."


def _page(title: str, summary: str, body: str, thumb_px: int) -> str:
    heading = escape(title)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{heading}</title>'
        f"<style>{STYLE}</style></head>\n"
        f'<body style="--px:{int(thumb_px)}px"><h1>{heading}</h1><p>{summary}</p>\n'
        "<table><tr><th>row</th><th>status</th><th>source</th><th>target</th><th>result</th>"
        f"<th>detail</th></tr>\n{body}</table></body></html>\n"
    )
