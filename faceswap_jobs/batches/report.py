"""`batch report`: one self-contained HTML page of source / target / result thumbnails.

People check a backfill's quality by looking at it. The page embeds its pictures (no request
leaves the browser when it is opened, so it can be mailed or archived), fetches each URL once,
and escapes every text: a URL or a label from the input file never becomes markup.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from faceswap_jobs.thumbnails import fetch_thumbnail

STYLE = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:6px;vertical-align:top}
.badge{padding:2px 6px;border-radius:4px;color:#fff;background:#888}
.succeeded{background:#2a7}.failed{background:#c33}.rejected{background:#a60}
.missing{width:var(--px);height:var(--px);display:flex;align-items:center;
justify-content:center;background:#f4f4f4;color:#999;font-size:12px;text-align:center}
"""


@dataclass(frozen=True)
class SheetRow:
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
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    urls = sorted({u for r in rows for u in (r.source_url, r.target_url, r.result_url) if u})
    cells: dict[str, str] = {}
    with ThreadPoolExecutor(concurrency) as pool:
        for done, (url, cell) in enumerate(
            pool.map(lambda u: (u, _cell(u, thumb_px)), urls), start=1
        ):
            cells[url] = cell
            if on_progress:
                on_progress(done, len(urls))
    counts = Counter(r.status for r in rows)
    summary = ", ".join(f"{n} {html.escape(s)}" for s, n in sorted(counts.items()))
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "".join(_row(r, cells) for r in rows)
    out.write_text(
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style><body style='--px:{thumb_px}px'><h1>{html.escape(title)}</h1>"
        f"<p>{len(rows)} rows: {summary}. Generated {generated}.</p><table><tr><th>row</th>"
        f"<th>status</th><th>source</th><th>target</th><th>result</th><th>detail</th></tr>"
        f"{body}</table></body>"
    )
    return out


def _cell(url: str, thumb_px: int) -> str:
    image, reason = fetch_thumbnail(url, thumb_px)
    if image is None:
        return f"<div class=missing>{html.escape(reason)}</div>"
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"<img alt='' src='data:image/jpeg;base64,{data}'>"


def _row(row: SheetRow, cells: dict[str, str]) -> str:
    def picture(url: str | None) -> str:
        return cells.get(url, "") if url else "<div class=missing>none</div>"

    job = f"<br><small>{html.escape(row.job_id)}</small>" if row.job_id else ""
    status = html.escape(row.status)
    return (
        f"<tr><td>{html.escape(row.label)}{job}</td>"
        f"<td><span class='badge {status}'>{status}</span></td>"
        f"<td>{picture(row.source_url)}</td><td>{picture(row.target_url)}</td>"
        f"<td>{picture(row.result_url)}</td><td>{html.escape(row.detail)}</td></tr>"
    )
