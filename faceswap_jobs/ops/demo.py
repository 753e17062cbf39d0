"""`faceswap-jobs demo`: the whole system on private local services, end to end, in one command.

Starts what is not configured (a private redis-server unless FACESWAP_REDIS_URL is set, the
emulator unless FACESWAP_API_BASE_URL is set), a worker and Flower; submits sample swaps, shows a
live progress bar, prints and saves the results, then stops everything it started.

On a shared Redis the demo must not touch anyone's jobs: it uses a key prefix and queues of its
own. Each run writes a folder of its own under the output folder, so old images never mix in.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from PIL import Image, ImageDraw
from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from faceswap_jobs.batches.addresses import HostPolicy
from faceswap_jobs.batches.outbound import FetchError, fetch
from faceswap_jobs.batches.thumbnails import MAX_IMAGE_BYTES, thumbnail_or_none
from faceswap_jobs.config import Settings
from faceswap_jobs.models import JobRecord, JobState
from faceswap_jobs.ops.sandbox import (
    ManagedProcess,
    free_port,
    http_ok,
    private_redis,
    python_module,
    wait_until,
)
from faceswap_jobs.producer.submit import Producer

VENDOR_SAMPLES = ("https://cdn.acedata.cloud/n1lmd8.png", "https://cdn.acedata.cloud/3np95r.png")
"""The documentation's own example images, used when the demo talks to the real API."""
DEMO_TIMEOUT_S = 900.0
THUMB_PX = 160
HEADER_PX = 24
LABEL_PX = 130

console = Console()


def run_demo(settings: Settings, *, count: int, output: str, time_scale: float, hold: bool) -> int:
    out = Path(output).resolve() / time.strftime("run-%Y%m%d-%H%M%S")
    (out / "logs").mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            return _run(stack, settings, count, out, time_scale, hold)
        except KeyboardInterrupt:
            console.print("\n[yellow]interrupted: stopping every process the demo started[/yellow]")
            return 130


def _run(
    stack: contextlib.ExitStack,
    settings: Settings,
    count: int,
    out: Path,
    time_scale: float,
    hold: bool,
) -> int:
    env = dict(os.environ)
    if "redis_url" in settings.model_fields_set:
        redis_url = settings.redis_url
        console.print(f"Redis: using FACESWAP_REDIS_URL ({_host_of(redis_url)})")
    else:
        redis_url = stack.enter_context(private_redis())
        console.print(f"Redis: private redis-server at {redis_url}")
    if "api_base_url" in settings.model_fields_set:
        api_base, token = settings.api_base_url, settings.api_token
        samples = _samples_of(api_base)
        hosts = HostPolicy(allow_private_hosts=settings.report_allow_private_hosts)
        console.print(f"API: {api_base}")
    else:
        api_base, token, samples = _start_emulator(stack, env, out, time_scale)
        hosts = HostPolicy(allow_private_hosts=True)  # our own emulator serves on loopback
        console.print(f"API: local emulator at {api_base} (time scale {time_scale:g})")
    prefix = f"demo-{secrets.token_hex(3)}"
    own: dict[str, Any] = {"key_prefix": prefix, "interactive_queue": f"{prefix}.interactive",
           "bulk_queue": f"{prefix}.bulk"}  # fmt: skip
    env.update(
        FACESWAP_REDIS_URL=redis_url,
        FACESWAP_API_BASE_URL=api_base,
        FACESWAP_API_TOKEN=token.get_secret_value(),
        FACESWAP_BACKOFF_BASE_S="0.5",
        **{f"FACESWAP_{name.upper()}": value for name, value in own.items()},
    )
    console.print(f"Keys and queues: {prefix}* (nobody else's jobs are touched)")
    worker = ManagedProcess(
        "worker",
        python_module("faceswap_jobs", "worker", "--hostname", "demo@%h"),
        out / "logs" / "worker.log",
        env,
    )
    stack.callback(worker.stop)
    flower_port, flower_password = free_port(), secrets.token_urlsafe(12)
    flower = ManagedProcess(
        "flower",
        python_module("faceswap_jobs", "flower"),
        out / "logs" / "flower.log",
        {
            **env,
            "FACESWAP_FLOWER_PORT": str(flower_port),
            "FACESWAP_FLOWER_PASSWORD": flower_password,
        },
    )
    stack.callback(flower.stop)
    flower_url = f"http://127.0.0.1:{flower_port}"

    producer = Producer(
        Settings(redis_url=redis_url, api_base_url=api_base, api_token=token, **own)
    )
    wait_until(
        lambda: bool(producer.app.control.ping(timeout=0.5)), 60.0, "worker", worker.log_path
    )
    wait_until(http_ok(f"{flower_url}/healthcheck"), 60.0, "Flower", flower.log_path)
    console.print(
        f"Flower: {flower_url}  (user [bold]{settings.flower_user}[/bold], "
        f"password [bold]{flower_password}[/bold])"
    )

    pairs = [(samples[i % len(samples)], samples[(i + 1) % len(samples)]) for i in range(count)]
    jobs = [
        producer.submit_swap(src, dst, metadata={"demo_index": i})
        for i, (src, dst) in enumerate(pairs)
    ]
    records = _follow(producer, [job.id for job in jobs])
    _save(records, out, hosts)
    _print_table(records)
    ok = sum(r.state is JobState.SUCCEEDED for r in records)
    console.print(f"{ok}/{len(records)} succeeded; images, contact sheet and results.json in {out}")
    if hold:
        console.print(
            f"Flower stays up at {flower_url} (user {settings.flower_user}, password "
            f"{flower_password}); press Ctrl-C to stop everything."
        )
        while worker.alive():
            time.sleep(1.0)
    else:
        console.print("Worker, Flower and the services the demo started stop now "
                      "(`faceswap-jobs demo --hold` keeps them up).")  # fmt: skip
    return 0 if ok == len(records) else 1


def _samples_of(api_base: str) -> list[str]:
    """The vendor's example images for the vendor's API; for anything else (an emulator run
    elsewhere), its own samples when it serves them: a local API may not reach the internet."""
    host = urlsplit(api_base).hostname or ""
    if host == "acedata.cloud" or host.endswith(".acedata.cloud"):
        return list(VENDOR_SAMPLES)
    try:
        names = requests.get(f"{api_base.rstrip('/')}/samples", timeout=5).json()["samples"]
        return [f"{api_base.rstrip('/')}/samples/{name}" for name in names]
    except (requests.RequestException, ValueError, KeyError, TypeError):
        console.print("[yellow]the API serves no samples: using the vendor's example images")
        return list(VENDOR_SAMPLES)


def _start_emulator(
    stack: contextlib.ExitStack, env: dict[str, str], out: Path, time_scale: float
) -> tuple[str, SecretStr, list[str]]:
    port, token = free_port(), secrets.token_urlsafe(16)
    emulator = ManagedProcess(
        "emulator",
        python_module("faceswap_jobs.emulator", *_emulator_args(port, token, time_scale)),
        out / "logs" / "emulator.log",
        env,
    )
    stack.callback(emulator.stop)
    base = f"http://127.0.0.1:{port}"
    wait_until(http_ok(f"{base}/_emulator/healthz"), 30.0, "emulator", emulator.log_path)
    names = requests.get(f"{base}/samples", timeout=5).json()["samples"]
    return base, SecretStr(token), [f"{base}/samples/{name}" for name in names]


def _emulator_args(port: int, token: str, time_scale: float) -> list[str]:
    """Some injected faults, so the demo shows retries doing their work."""
    options = {
        "--port": port,
        "--tokens": token,
        "--time-scale": time_scale,
        "--fault-500": 0.1,
        "--fault-429": 0.1,
    }
    return [str(part) for pair in options.items() for part in pair]


def _follow(producer: Producer, job_ids: list[str]) -> list[JobRecord]:
    columns = (
        TextColumn("[bold]swaps"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
    )  # fmt: skip
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("swaps", total=len(job_ids), detail="")
        while True:
            records = [producer.get_job(job_id) for job_id in job_ids]
            known = [r for r in records if r is not None]
            done = sum(r.state.finished for r in known)
            retries = sum(max(0, r.calls - 1) for r in known)
            progress.update(bar, completed=done, detail=f"{retries} retried call(s)")
            if done == len(job_ids) or time.monotonic() > deadline:
                return known
            time.sleep(0.25)


def _save(records: list[JobRecord], out: Path, hosts: HostPolicy) -> None:
    """Result images are fetched like any URL from an answer: guarded, bounded in time and size."""
    rows = []
    for index, record in enumerate(records):
        row = json.loads(record.model_dump_json(exclude={"history"}))
        if record.result is not None:
            path = out / f"swap-{index:02d}-{record.id[:8]}.png"
            try:
                body = fetch(
                    record.result.image_url, timeout_s=30.0, max_bytes=MAX_IMAGE_BYTES, hosts=hosts
                )
            except FetchError as exc:
                row["save_failed"] = exc.message
            else:
                path.write_bytes(body.getvalue())
                row["saved_as"] = path.name
        rows.append(row)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    _contact_sheet(records, rows, out, hosts)


def _contact_sheet(
    records: list[JobRecord], rows: list[dict[str, Any]], out: Path, hosts: HostPolicy
) -> None:
    """Source, target and result side by side, each row labelled with its job, state and calls:
    quality is judged by eye, not by a table."""
    top, left = HEADER_PX, LABEL_PX
    sheet = Image.new("RGB", (left + 3 * THUMB_PX, top + max(1, len(records)) * THUMB_PX), "white")
    draw = ImageDraw.Draw(sheet)
    for column, title in enumerate(("source", "target", "result")):
        draw.text((left + column * THUMB_PX + 8, 6), title, fill="black")
    for index, (record, row) in enumerate(zip(records, rows, strict=True)):
        y = top + index * THUMB_PX
        label = (f"job {record.id[:8]}\n{record.state}\n"
                 f"{record.attempts} attempt(s)\n{record.calls} call(s)")  # fmt: skip
        colour = "black" if record.state is JobState.SUCCEEDED else "red"
        draw.multiline_text((8, y + 8), label, fill=colour, spacing=4)
        urls = [record.request.source_image_url, record.request.target_image_url]
        images = [thumbnail_or_none(url, size_px=THUMB_PX, hosts=hosts) for url in urls]
        saved = out / row["saved_as"] if "saved_as" in row else None
        images.append(thumbnail_or_none(saved, size_px=THUMB_PX) if saved else None)
        for column, image in enumerate(images):
            if image is not None:
                sheet.paste(image, (left + column * THUMB_PX, y))
    sheet.save(out / "contact-sheet.png")


def _print_table(records: list[JobRecord]) -> None:
    table = Table("job", "state", "attempts", "calls", "latency", "image", "retried after")
    for record in records:
        result = record.result
        retried = {
            f"{(a.error or {}).get('status') or ''} {(a.error or {}).get('code') or ''}".strip()
            for a in record.history
            if a.error
        }
        table.add_row(
            record.id[:8],
            str(record.state),
            str(record.attempts),
            str(record.calls),
            f"{record.latency_s:.1f}s" if record.latency_s is not None else "-",
            f"{result.image_width}x{result.image_height} {(result.image_size or 0) // 1024} KiB"
            if result
            else "-",
            ", ".join(sorted(retried)) or "-",
        )
    console.print(table)


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"
